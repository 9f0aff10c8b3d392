//! Which residency bucket each open flow was last counted in ([`Seen`]), so that a flow counts
//! once per interval and bucket in `connections`, across flushes.
//!
//! It holds an entry for every flow that moved bytes lately, so on a host with 100,000 open
//! sockets it holds 100,000 entries: sockets are keyed by cookie alone and marked in 8 bytes (a
//! 16-byte entry), and only the peers of sockets counted per peer (unconnected UDP, ping, raw) by
//! cookie and address.

use std::net::SocketAddr;

use foldhash::HashMap;

use crate::tracker::FlowRecord;

/// The interval (its number: start ÷ length) and bucket a flow was last counted in; the bucket as
/// the low 32 bits of its key's hash. Two buckets of one interval look alike to one flow once in
/// 2³² changes of its bucket (a database reload, an app renamed), and it then counts once for
/// both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Mark {
    interval: u32,
    bucket: u32,
}

impl Mark {
    /// The mark of `interval_start` (a multiple of `interval_secs`, after 1970 and before 2106
    /// for intervals of a second; `None` outside) and bucket `hash`.
    pub(super) fn new(interval_start: i64, interval_secs: i64, hash: u64) -> Option<Self> {
        let interval = u32::try_from(interval_start.checked_div(interval_secs)?).ok()?;
        Some(Self { interval, bucket: u32::try_from(hash & u64::from(u32::MAX)).unwrap_or_default() })
    }
}

#[derive(Debug, Default)]
pub(super) struct Seen {
    /// Flows that are whole sockets, by cookie.
    sockets: HashMap<u64, Mark>,
    /// Flows of one peer of a socket, by (cookie, peer).
    peers: HashMap<(u64, SocketAddr), Mark>,
}

/// Where `record`'s flow is kept: a peer flow by its peer, any other by its cookie alone (a
/// socket is one flow, whatever address it is connected to).
enum Key {
    Socket(u64),
    Peer(u64, SocketAddr),
}

fn key_of(record: &FlowRecord) -> Key {
    match record.remote {
        Some(peer) if record.of_one_peer() => Key::Peer(record.cookie, peer),
        _ => Key::Socket(record.cookie),
    }
}

impl Seen {
    /// Marks `record`'s flow counted in `mark`; whether it was not already (then the caller
    /// counts it).
    pub(super) fn count(&mut self, record: &FlowRecord, mark: Mark) -> bool {
        let previous = match key_of(record) {
            Key::Socket(cookie) => self.sockets.insert(cookie, mark),
            Key::Peer(cookie, peer) => self.peers.insert((cookie, peer), mark),
        };
        previous != Some(mark)
    }

    /// Forgets `record`'s flow (it ended).
    pub(super) fn forget(&mut self, record: &FlowRecord) {
        match key_of(record) {
            Key::Socket(cookie) => self.sockets.remove(&cookie),
            Key::Peer(cookie, peer) => self.peers.remove(&(cookie, peer)),
        };
    }

    /// Forgets flows last counted before the interval of `horizon` (their next record counts
    /// them again whatever the entry says).
    pub(super) fn forget_before(&mut self, horizon: Mark) {
        self.sockets.retain(|_, m| m.interval >= horizon.interval);
        self.peers.retain(|_, m| m.interval >= horizon.interval);
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.sockets.len() + self.peers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::record::Direction;

    fn record(cookie: u64, remote: &str, direction: Direction) -> FlowRecord {
        let mut r = crate::journal::tests::fixtures::Flow::new(cookie, remote, jiff::Timestamp::UNIX_EPOCH).record(
            crate::tracker::record::RecordKind::Update,
            jiff::Timestamp::UNIX_EPOCH,
            1,
            0,
        );
        r.direction = direction;
        r.protocol = crate::tracker::record::Protocol::Udp;
        r
    }

    fn mark(interval: i64, hash: u64) -> Mark {
        Mark::new(interval * 60, 60, hash).unwrap()
    }

    /// A socket counts once per mark whatever its remote address; each peer of a socket counted
    /// per peer counts on its own; a forgotten flow counts again.
    #[test]
    fn a_flow_counts_once_per_mark() {
        let mut seen = Seen::default();
        let connected = record(1, "10.0.0.1:53", Direction::Outbound);
        assert!(seen.count(&connected, mark(0, 7)));
        assert!(!seen.count(&connected, mark(0, 7)), "same interval and bucket");
        assert!(seen.count(&connected, mark(0, 8)), "another bucket");
        let reconnected = record(1, "10.0.0.2:53", Direction::Outbound);
        assert!(!seen.count(&reconnected, mark(0, 8)), "one socket, one flow");

        let (a, b) =
            (record(2, "10.0.0.1:53", Direction::Unconnected), record(2, "10.0.0.2:53", Direction::Unconnected));
        assert!(seen.count(&a, mark(0, 7)) && seen.count(&b, mark(0, 7)), "peers count on their own");
        assert!(!seen.count(&b, mark(0, 7)));
        assert_eq!(seen.len(), 3);

        seen.forget(&a);
        assert!(seen.count(&a, mark(0, 7)), "forgotten at its end");
        seen.forget_before(mark(1, 0));
        assert_eq!(seen.len(), 0);
        assert!(seen.count(&b, mark(0, 7)));
    }

    /// Intervals before 1970 or past what 32 bits number are not marked (the record then
    /// counts, as a flow never seen).
    #[test]
    fn marks_cover_the_representable_intervals_only() {
        assert_eq!(Mark::new(3600, 3600, 0x1_0000_0007), Some(Mark { interval: 1, bucket: 7 }));
        assert_eq!(Mark::new(-3600, 3600, 7), None);
        assert_eq!(Mark::new(i64::from(u32::MAX) + 1, 1, 7), None);
        assert_eq!(Mark::new(60, 0, 7), None);
    }
}
