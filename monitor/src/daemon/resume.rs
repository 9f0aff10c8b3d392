//! The sink's first step for a record: a flow of a socket older than this run, whose direction
//! the kernel could not give, that an earlier run journaled since the boot (the daemon was
//! restarted while the connection stayed open) continues that flow: it takes the direction the
//! journal knows (also over the kernel's guess for a peer of an older socket), is not a new flow ([`FlowRecord::resumed`]), and stays charged to the owner
//! and app the journal recorded when another process (or none) holds the socket now. Without
//! this a restart made every open connection a new flow of direction `unknown` (a server's
//! connection then listed under its client's port, a second endpoint, "new"), and a socket handed
//! on to another process was charged to it from the restart on.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    net::SocketAddr,
    num::NonZeroUsize,
    sync::Arc,
};

use log::{debug, warn};
use lru::LruCache;

use crate::{
    clock::Clock,
    errors::chain,
    identity::App,
    journal::{Earlier, EarlierFlow, JournalWriter},
    tracker::{
        FlowRecord,
        record::{Direction, OwnerSource, Payload, PayloadSources, RecordKind, Release, Wire, local_beside},
    },
};

/// Sockets whose answer is kept: the records of an older socket all ask (their direction stays
/// unknown in the tracker), and such sockets are few.
const CACHED: NonZeroUsize = NonZeroUsize::new(4096).expect("non-zero");

/// Sockets older than the run whose release is being followed at once ([`Resume::ending`]):
/// a release's peer closes come together, so this holds one or two.
const ENDING: usize = 64;

/// Earlier peers looked up per call of [`Resume::closes_due`] at most (up to three indexed queries
/// each, some 10–50 µs): a socket released with thousands of them has them closed over several
/// calls, one per message the sink handles (its ticks too, every second when idle), not in one
/// burst.
pub const CLOSES_PER_CALL: usize = 1024;

/// The journal's answers per flow: socket cookie and remote end.
pub struct Resume {
    known: LruCache<(u64, Option<SocketAddr>), Option<Earlier>>,
    /// Sockets older than this run counted per peer whose peers are closing with their release,
    /// with the remote ends this run closed and the first close (a template for the others).
    ending: HashMap<u64, Ending>,
    /// Sockets whose release's last peer close came: their earlier peers are due.
    due: Vec<u64>,
    /// Released sockets whose earlier peers are being closed, [`CLOSES_PER_CALL`] at a time.
    backlog: VecDeque<Backlog>,
    /// Sockets skipped because [`ENDING`] were followed (said once).
    skipped: bool,
}

/// A socket older than the run whose peers are closing with its release.
struct Ending {
    first: FlowRecord,
    closed: HashSet<Option<SocketAddr>>,
}

/// A released socket's earlier peers still to close, last first ([`Resume::closes_due`]).
struct Backlog {
    cookie: u64,
    first: FlowRecord,
    flows: Vec<EarlierFlow>,
}

impl Default for Resume {
    fn default() -> Self {
        Self {
            known: LruCache::new(CACHED),
            ending: HashMap::new(),
            due: Vec::new(),
            backlog: VecDeque::new(),
            skipped: false,
        }
    }
}

impl Resume {
    /// A record of a socket older than this run (the kernel gave it no direction, or its owner was
    /// learnt after its creation: `syscall`, `procfs`, none) whose flow (socket and remote end) an
    /// earlier run journaled since the boot (`clock`'s) continues that run's flow: it is marked
    /// resumed, takes the direction the journal knows when it has none, and stays charged to the
    /// owner and app the journal recorded when the socket is now held by another process or by
    /// none (a socket handed on stays its creator's, as within a run; without this a restart
    /// charged it to the process that read or wrote it next, or to `unknown` for a closed socket
    /// still sending). Returns that app, which the record is charged to instead of the one its
    /// owner would give. A journal that cannot answer leaves the record as it is.
    pub fn apply(&mut self, record: &mut FlowRecord, journal: &JournalWriter, clock: Clock) -> Option<Arc<App>> {
        let older = record.direction == Direction::Unknown
            || matches!(record.owner.source, OwnerSource::Syscall | OwnerSource::Procfs | OwnerSource::Unknown);
        if !older {
            return None;
        }
        let key = (record.cookie, record.remote);
        self.note_ending(record);
        if !self.known.contains(&key) {
            let boot_ms = clock.wall(0).as_millisecond();
            let found = journal.earlier(key.0, key.1, boot_ms).unwrap_or_else(|e| {
                debug!("earlier record of cookie {}: {}", key.0, chain(&e));
                None
            });
            self.known.put(key, found);
        }
        let earlier = self.known.get(&key).cloned().flatten();
        if record.final_of_socket {
            self.known.pop(&key);
        } else if record.event == RecordKind::Close {
            // The continued flow ended in this run (a disconnect): a later flow of the socket with
            // the same remote end (connected again) is a new one (an adversarial re-check: it took
            // the earlier flow's first_seen and reports counted one flow fewer).
            self.known.put(key, None);
        }
        let earlier = earlier?;
        // No direction, or the guess the kernel makes for a peer of a socket older than the run
        // (it did not see the peer's first datagram: `unconnected`, or `inbound` for one that came
        // in a second after the socket was found) where the earlier run saw who sent first: the
        // journaled one.
        let peer = |d: Direction| matches!(d, Direction::Unconnected | Direction::Inbound);
        let guessed = peer(record.direction) && peer(earlier.direction);
        if record.direction == Direction::Unknown || guessed {
            record.direction = earlier.direction;
        }
        record.resumed = true;
        // The flow's own start, not this run's discovery of it: record-summed reports tell a
        // continued flow from a new one by its earlier records since then.
        record.first_seen = record.first_seen.min(earlier.first_seen);
        let (owner, app) = earlier.owner?;
        let handed_on = record.owner.source == OwnerSource::Unknown || record.owner.tgid != owner.tgid;
        if !handed_on || owner.source == OwnerSource::Unknown {
            return None;
        }
        record.owner = owner;
        Some(app)
    }

    /// Follows a peer's `close` at the release of a socket older than the run
    /// ([`FlowRecord::release`]); the last one makes the socket's earlier peers due.
    fn note_ending(&mut self, record: &FlowRecord) {
        if !matches!(record.release, Release::Peer | Release::LastPeer) {
            return;
        }
        if !self.ending.contains_key(&record.cookie) && self.ending.len() >= ENDING {
            if !self.skipped {
                self.skipped = true;
                warn!(
                    "more than {ENDING} sockets older than this run released at once: the peers an earlier run \
                     journaled of the others keep their flows open in the journal"
                );
            }
            return;
        }
        let ending = self
            .ending
            .entry(record.cookie)
            .or_insert_with(|| Ending { first: record.clone(), closed: HashSet::new() });
        ending.closed.insert(record.remote);
        if record.release == Release::LastPeer {
            self.due.push(record.cookie);
        }
    }

    /// Whether a socket's release completed since the last [`Self::closes_due`]: its earlier
    /// peers are to be read (after a flush, so that the journal holds this run's closes too).
    #[must_use]
    pub fn releases_due(&self) -> bool {
        !self.due.is_empty()
    }

    /// Whether released sockets' earlier peers are to be closed ([`Self::closes_due`]).
    #[must_use]
    pub fn closes_are_due(&self) -> bool {
        !self.due.is_empty() || !self.backlog.is_empty()
    }

    /// Earlier peers of released sockets still to close.
    #[must_use]
    pub fn closes_left(&self) -> usize {
        self.backlog.iter().map(|b| b.flows.len()).sum()
    }

    /// The `close` records of the peers an earlier run journaled of a socket older than this run
    /// that this run saw released (all its peer closes came: [`FlowRecord::release`]) and that
    /// no run closed: peers that did not talk again after the restart (an adversarial pass:
    /// they never got a `close`, their flows ending on the earlier run's `shutdown`). Each closes
    /// with the socket (dated at its release), without bytes: what it moved is in the earlier
    /// run's records, which it continues (`resumed`, their `first_seen`). A flow whose latest
    /// indexed record is a `close` (an earlier run's, or this run's past the caps), or one the
    /// journal cannot answer for, gets none. At most `limit` peers are looked up per call; the
    /// rest wait for the next ([`Self::closes_are_due`]). `all` (the sink's end): sockets whose
    /// last peer close was not seen too.
    pub fn closes_due(&mut self, journal: &JournalWriter, clock: Clock, all: bool, limit: usize) -> Vec<FlowRecord> {
        let mut due = std::mem::take(&mut self.due);
        if all {
            due.extend(self.ending.keys().copied());
        }
        let boot_ms = clock.wall(0).as_millisecond();
        for cookie in due {
            let Some(ending) = self.ending.remove(&cookie) else { continue };
            let flows = match journal.earlier_flows(cookie, boot_ms) {
                Ok(flows) => flows,
                Err(e) => {
                    warn!("cannot read the earlier flows of a released socket (cookie {cookie}): {}", chain(&e));
                    continue;
                }
            };
            let mut flows: Vec<_> =
                flows.into_iter().filter(|f| !f.closed && !ending.closed.contains(&Some(f.remote))).collect();
            flows.reverse();
            if !flows.is_empty() {
                self.backlog.push_back(Backlog { cookie, first: ending.first, flows });
            }
        }
        let mut closes = Vec::new();
        let mut looked_up = 0;
        while looked_up < limit {
            let Some(socket) = self.backlog.front_mut() else { break };
            let Some(flow) = socket.flows.pop() else {
                self.backlog.pop_front();
                continue;
            };
            looked_up += 1;
            if let Some(close) = close_of(&mut self.known, socket, &flow, journal, boot_ms) {
                closes.push(close);
            }
        }
        if self.backlog.front().is_some_and(|b| b.flows.is_empty()) {
            self.backlog.pop_front();
        }
        closes
    }
}

/// The `close` of one earlier peer of a released socket ([`Resume::closes_due`]), or none: a
/// connected flow of the socket, or one the journal cannot answer for.
fn close_of(
    known: &mut LruCache<(u64, Option<SocketAddr>), Option<Earlier>>,
    socket: &Backlog,
    flow: &EarlierFlow,
    journal: &JournalWriter,
    boot_ms: i64,
) -> Option<FlowRecord> {
    let cookie = socket.cookie;
    let mut close = socket.first.clone();
    close.remote = Some(flow.remote);
    close.protocol = flow.protocol;
    close.direction = flow.direction;
    if !close.of_one_peer() {
        return None; // a connected flow of the socket, ended by its peer change
    }
    let earlier = match journal.earlier(cookie, close.remote, boot_ms) {
        Ok(earlier) => earlier?,
        Err(e) => {
            debug!("earlier record of cookie {cookie}: {}", chain(&e));
            return None;
        }
    };
    close.first_seen = earlier.first_seen;
    known.put((cookie, close.remote), Some(earlier));
    close.release = Release::No;
    close.payload = Payload::default();
    close.delta_payload = Payload::default();
    close.wire = Wire::default();
    close.delta_wire = Wire::default();
    close.payload_sources = PayloadSources::default();
    close.rtt = None;
    close.last_seen = close.closed.unwrap_or(close.last_seen);
    close.local = close.local.map(|local| local_beside(local, flow.remote));
    close.complete = true;
    Some(close)
}

#[cfg(test)]
mod tests {
    use super::Resume;

    /// A clock whose boot was at `ms` (Unix milliseconds).
    fn booted_at(ms: i64) -> crate::clock::Clock {
        crate::clock::Clock::with_offset(i128::from(ms) * 1_000_000)
    }
    use crate::{
        journal::tests::{
            fixtures::{self, Flow, at},
            tempdir, writer_in, writer_restarted,
        },
        tracker::record::{Direction, RecordKind},
    };

    /// A journal in which an earlier run recorded each `(cookie, remote, direction)` flow as open
    /// at its stop, and the writer of the run started after it.
    fn restarted_after(
        dir: &std::path::Path,
        app: &str,
        flows: &[(u64, &str, Direction)],
    ) -> crate::journal::JournalWriter {
        let mut w = writer_in(dir);
        let app = fixtures::app(app);
        for &(cookie, remote, direction) in flows {
            let mut before = Flow::new(cookie, remote, at(1_794_787_200));
            before.direction = direction;
            w.append(&before.record(RecordKind::Shutdown, at(1_794_787_260), 100, 200), &app, None);
        }
        w.flush().expect("flush");
        drop(w);
        writer_restarted(dir, 1_794_787_280)
    }

    /// The new run's record of a socket older than it (its owner learnt by a syscall), first seen
    /// at Unix second `first`.
    fn later(
        cookie: u64,
        remote: &str,
        direction: Direction,
        kind: RecordKind,
        first: i64,
    ) -> crate::tracker::FlowRecord {
        let mut flow = Flow::new(cookie, remote, at(first));
        flow.direction = direction;
        let mut r = flow.record(kind, at(first + 10), 10, 20);
        r.owner.source = crate::tracker::record::OwnerSource::Syscall;
        r
    }

    /// A journal in which an earlier run recorded one UDP `kind` record of each peer in
    /// `remotes` of socket 7 (first seen at Unix second 1_794_787_200), and the writer of the run
    /// started after it.
    fn udp_peers_before_restart(
        dir: &std::path::Path,
        remotes: &[String],
        direction: Direction,
        kind: RecordKind,
    ) -> crate::journal::JournalWriter {
        let mut w = writer_in(dir);
        let app = fixtures::app("udp");
        for remote in remotes {
            let mut flow = Flow::new(7, remote, at(1_794_787_200));
            flow.direction = direction;
            let mut r = flow.record(kind, at(1_794_787_210), 100, 200);
            r.protocol = crate::tracker::record::Protocol::Udp;
            w.append(&r, &app, None);
        }
        w.flush().expect("flush");
        drop(w);
        writer_restarted(dir, 1_794_787_280)
    }

    /// This run's UDP `close` of socket 7's peer `remote`, first seen at Unix second `first`,
    /// marked `release`.
    fn udp_close(
        remote: &str,
        direction: Direction,
        release: crate::tracker::record::Release,
        first: i64,
    ) -> crate::tracker::FlowRecord {
        let mut r = later(7, remote, direction, RecordKind::Close, first);
        (r.protocol, r.release) = (crate::tracker::record::Protocol::Udp, release);
        r
    }

    /// A connection open across a restart: the new run's first record of it (direction unknown,
    /// its totals its deltas) takes the journaled direction and is no new flow; a socket the
    /// journal never saw, and one with a direction, are left as they are.
    #[test]
    fn a_flow_journaled_by_an_earlier_run_continues() {
        let dir = tempdir();
        let w = restarted_after(dir.path(), "server", &[(7, "192.0.2.1:50000", Direction::Inbound)]);

        let mut resume = Resume::default();
        let mut after = Flow::new(7, "192.0.2.1:50000", at(1_794_787_300));
        after.direction = Direction::Unknown;
        let mut r = after.record(RecordKind::Update, at(1_794_787_310), 10, 20);
        assert!(r.is_first());
        resume.apply(&mut r, &w, booted_at(0));
        assert_eq!((r.direction, r.resumed, r.is_first()), (Direction::Inbound, true, false));
        assert_eq!(r.first_seen, at(1_794_787_200), "the flow's first_seen, not this run's");

        let mut other = Flow::new(9, "192.0.2.9:443", at(1_794_787_300));
        other.direction = Direction::Unknown;
        let mut r = other.record(RecordKind::Update, at(1_794_787_310), 10, 20);
        resume.apply(&mut r, &w, booted_at(0));
        assert_eq!((r.direction, r.resumed, r.is_first()), (Direction::Unknown, false, true));

        let mut fresh = Flow::new(7, "192.0.2.1:50000", at(1_794_787_300));
        fresh.direction = Direction::Outbound;
        let mut r = fresh.record(RecordKind::Update, at(1_794_787_310), 10, 20);
        resume.apply(&mut r, &w, booted_at(0));
        assert!(!r.resumed && r.is_first(), "a flow with a direction is its own");
    }

    /// A continued flow that ends in this run (its socket disconnected, not released) ends the
    /// continuation: the socket's next flow to the same remote end is a new one, with its own
    /// first_seen.
    #[test]
    fn a_flow_after_the_continued_one_ended_is_new() {
        let dir = tempdir();
        let w = restarted_after(dir.path(), "client", &[(7, "192.0.2.1:53", Direction::Outbound)]);
        let mut resume = Resume::default();
        let mut r = later(7, "192.0.2.1:53", Direction::Outbound, RecordKind::Close, 1_794_787_300);
        resume.apply(&mut r, &w, booted_at(0));
        assert!(r.resumed, "the first flow continues the earlier run's");
        let mut r = later(7, "192.0.2.1:53", Direction::Outbound, RecordKind::Update, 1_794_787_320);
        resume.apply(&mut r, &w, booted_at(0));
        assert!(!r.resumed && r.is_first(), "connected again after its close: a new flow");
        assert_eq!(r.first_seen, at(1_794_787_320));
    }

    /// A UDP server's peer flow open across a restart: the new run cannot tell who sent first
    /// (the socket is older than it) and says `unconnected`; the earlier run saw the client send
    /// first, and the flow stays `inbound` (QA26: it flipped, and reports listed it under two
    /// endpoints). A peer this host sent to first stays `unconnected`.
    #[test]
    fn a_peer_that_sent_first_stays_inbound_across_a_restart() {
        let dir = tempdir();
        let journaled = [(7, "192.0.2.1:50000", Direction::Inbound), (8, "192.0.2.1:50000", Direction::Unconnected)];
        let w = restarted_after(dir.path(), "server", &journaled);
        // The new run's guess either way: `unconnected`, or `inbound` for a first datagram that
        // came in a second after the socket was found.
        for (cookie, guess, want) in [
            (7, Direction::Unconnected, Direction::Inbound),
            (8, Direction::Unconnected, Direction::Unconnected),
            (8, Direction::Inbound, Direction::Unconnected),
        ] {
            let mut r = later(cookie, "192.0.2.1:50000", guess, RecordKind::Update, 1_794_787_300);
            Resume::default().apply(&mut r, &w, booted_at(0));
            assert_eq!((r.direction, r.resumed), (want, true), "cookie {cookie}");
        }
    }

    /// A socket handed on to another process (or held by none: closed, still sending) across a
    /// restart stays charged to the owner and app the earlier run journaled, as within a run (an
    /// adversarial pass: the new run charged it to the process that used it next, or to
    /// `unknown`); a socket its journaled owner still holds is left to the identity stage.
    #[test]
    fn a_socket_handed_on_stays_its_journaled_owners_across_a_restart() {
        use crate::tracker::record::OwnerSource;
        let dir = tempdir();
        let mut w = writer_in(dir.path());
        let app = fixtures::app("creator");
        let mut before = Flow::new(7, "192.0.2.1:443", at(1_794_787_200));
        let journaled = before.record(RecordKind::Shutdown, at(1_794_787_260), 100, 200);
        w.append(&journaled, &app, None);
        w.flush().expect("flush");
        drop(w);
        let w = writer_restarted(dir.path(), 1_794_787_280);
        let after = |tgid: u32, source: OwnerSource| {
            let mut flow = Flow::new(7, "192.0.2.1:443", at(1_794_787_300));
            flow.direction = Direction::Unknown;
            let mut r = flow.record(RecordKind::Update, at(1_794_787_310), 10, 20);
            (r.owner.tgid, r.owner.source) = (tgid, source);
            r
        };
        for (tgid, source) in [(5151, OwnerSource::Syscall), (0, OwnerSource::Unknown)] {
            let mut r = after(tgid, source);
            let earlier = Resume::default().apply(&mut r, &w, booted_at(0)).expect("charged to the journaled app");
            assert_eq!(earlier.name, "creator");
            assert_eq!((r.owner.tgid, r.owner.source), (journaled.owner.tgid, OwnerSource::SockCreate));
            assert_eq!((r.direction, r.resumed), (Direction::Outbound, true));
        }
        let mut r = after(journaled.owner.tgid, OwnerSource::Syscall);
        assert!(Resume::default().apply(&mut r, &w, booted_at(0)).is_none(), "still its owner's: named as usual");
        assert!(r.resumed);
        // A journal from before the boot knows another socket of the same cookie.
        let mut r = after(5151, OwnerSource::Syscall);
        assert!(Resume::default().apply(&mut r, &w, booted_at(1_794_787_290_000)).is_none());
        assert!(!r.resumed && r.owner.tgid == 5151);
        // A flow the kernel gave a direction (a connected UDP socket) whose owner was learnt after
        // its creation is older than the run too: handed on, it stays its creator's (an
        // adversarial re-check: a UDP socket handed on was charged to the new holder).
        let mut r = after(5151, OwnerSource::Syscall);
        r.direction = Direction::Outbound;
        assert!(Resume::default().apply(&mut r, &w, booted_at(0)).is_some());
        assert_eq!((r.owner.tgid, r.resumed), (journaled.owner.tgid, true));
        // Another remote end of the same socket (re-connected, or another peer) is a flow of its own.
        let mut r = after(5151, OwnerSource::Syscall);
        r.remote = Some("192.0.2.2:443".parse().expect("address"));
        assert!(Resume::default().apply(&mut r, &w, booted_at(0)).is_none());
        assert!(!r.resumed && r.owner.tgid == 5151);
        // A socket created under this run (its owner recorded at creation) is its own.
        let mut r = after(5151, OwnerSource::SockCreate);
        r.direction = Direction::Outbound;
        assert!(Resume::default().apply(&mut r, &w, booted_at(0)).is_none());
        assert!(!r.resumed);
    }

    /// An unconnected socket open across a restart, released in the new run: its peers that did
    /// not talk again (A2, A3) get their `close` with it, without bytes, continuing their flows;
    /// the peer that talked again (A1) and the new one (B) have theirs from the tracker, the
    /// socket's connected flow before it turned to peers (C, `outbound`) is no peer, and a peer
    /// the earlier run closed (D, past the caps, its close in the index) is not closed again. A
    /// peer's close while the socket is open (past the caps) starts nothing; the release's last
    /// one does. Once only.
    #[test]
    fn the_earlier_runs_peers_close_with_their_socket() {
        use crate::tracker::record::{Protocol, Release};
        let dir = tempdir();
        let mut w = writer_in(dir.path());
        let app = fixtures::app("quic");
        for (remote, direction, kind) in [
            ("192.0.2.1:443", Direction::Unconnected, RecordKind::Shutdown),
            ("192.0.2.2:443", Direction::Unconnected, RecordKind::Shutdown),
            ("192.0.2.3:443", Direction::Inbound, RecordKind::Update),
            ("192.0.2.9:443", Direction::Outbound, RecordKind::Shutdown),
            ("192.0.2.6:443", Direction::Unconnected, RecordKind::Close),
        ] {
            let mut before = Flow::new(7, remote, at(1_794_787_200));
            before.direction = direction;
            let mut r = before.record(kind, at(1_794_787_260), 100, 200);
            r.protocol = Protocol::Udp;
            w.append(&r, &app, None);
        }
        w.flush().expect("flush");
        drop(w);
        let w = writer_restarted(dir.path(), 1_794_787_280);
        let mut resume = Resume::default();
        let close = |remote: &str, release: Release| {
            let mut r = later(7, remote, Direction::Unconnected, RecordKind::Close, 1_794_787_300);
            (r.protocol, r.release) = (Protocol::Udp, release);
            r
        };
        resume.apply(&mut close("192.0.2.5:443", Release::No), &w, booted_at(0));
        assert!(!resume.closes_are_due(), "a peer closed past the caps, the socket still open");
        resume.apply(&mut close("192.0.2.1:443", Release::Peer), &w, booted_at(0));
        assert!(!resume.closes_are_due(), "the release's other closes follow");
        resume.apply(&mut close("192.0.2.4:443", Release::LastPeer), &w, booted_at(0));
        assert!(resume.closes_are_due());
        let mut closes = resume.closes_due(&w, booted_at(0), false, super::CLOSES_PER_CALL);
        closes.sort_by_key(|r| r.remote);
        let remotes: Vec<String> = closes.iter().filter_map(|r| r.remote).map(|a| a.to_string()).collect();
        assert_eq!(remotes, ["192.0.2.2:443", "192.0.2.3:443"]);
        for mut r in closes {
            assert_eq!((r.event, r.delta_payload.tx_bytes, r.delta_wire.rx_bytes), (RecordKind::Close, 0, 0));
            assert_eq!((r.last_seen, r.closed), (at(1_794_787_310), Some(at(1_794_787_310))), "at the release");
            resume.apply(&mut r, &w, booted_at(0));
            assert!(r.resumed && !r.is_first(), "it continues the earlier flow: {r:#?}");
            assert_eq!(r.first_seen, at(1_794_787_200));
        }
        assert!(!resume.closes_are_due() && resume.closes_due(&w, booted_at(0), true, usize::MAX).is_empty(), "once");
    }

    /// A socket released with more earlier peers than one call looks up: they close over several
    /// calls of at most `CLOSES_PER_CALL` each (not in one burst on the sink thread), every one
    /// once; the sink's end (`all`) takes what is left at once.
    #[test]
    fn many_earlier_peers_close_over_several_calls() {
        use crate::tracker::record::Release;
        const PEERS: usize = super::CLOSES_PER_CALL * 2 + 10;
        let dir = tempdir();
        let remotes: Vec<String> = (0..PEERS).map(|i| format!("192.0.{}.{}:443", 2 + i / 250, 1 + i % 250)).collect();
        let w = udp_peers_before_restart(dir.path(), &remotes, Direction::Unconnected, RecordKind::Shutdown);
        let mut resume = Resume::default();
        let mut last = udp_close("198.51.100.1:443", Direction::Unconnected, Release::LastPeer, 1_794_787_300);
        resume.apply(&mut last, &w, booted_at(0));
        let mut seen = std::collections::HashSet::new();
        for call in 0..2 {
            assert!(resume.closes_are_due(), "call {call}");
            let closes = resume.closes_due(&w, booted_at(0), false, super::CLOSES_PER_CALL);
            assert_eq!(closes.len(), super::CLOSES_PER_CALL, "call {call}");
            seen.extend(closes.iter().filter_map(|r| r.remote));
        }
        assert!(resume.closes_are_due(), "10 left");
        let rest = resume.closes_due(&w, booted_at(0), true, usize::MAX);
        assert_eq!(rest.len(), 10);
        seen.extend(rest.iter().filter_map(|r| r.remote));
        assert_eq!(seen.len(), PEERS, "every earlier peer once");
        assert!(!resume.closes_are_due());
    }

    /// A peer an earlier run closed past the caps (`Release::Split`) after earlier records of its
    /// flow is not closed again with its socket after a restart: its close is findable by the
    /// socket (a review: the index held only its first record, and it got a second `close`). A
    /// peer that run left open is closed.
    #[test]
    fn a_peer_closed_past_the_caps_before_a_restart_is_not_closed_again() {
        use crate::tracker::record::{Protocol, Release};
        let dir = tempdir();
        let mut w = writer_in(dir.path());
        let app = fixtures::app("quic");
        for (remote, split) in [("192.0.2.1:443", true), ("192.0.2.2:443", false)] {
            let mut flow = Flow::new(7, remote, at(1_794_787_200));
            flow.direction = Direction::Unconnected;
            let mut first = flow.record(RecordKind::Update, at(1_794_787_210), 100, 200);
            first.protocol = Protocol::Udp;
            w.append(&first, &app, None);
            let kind = if split { RecordKind::Close } else { RecordKind::Shutdown };
            let mut end = flow.record(kind, at(1_794_787_260), 10, 20);
            end.protocol = Protocol::Udp;
            if split {
                end.release = Release::Split;
            }
            assert!(!end.is_first());
            w.append(&end, &app, None);
        }
        w.flush().expect("flush");
        drop(w);
        let w = writer_restarted(dir.path(), 1_794_787_280);
        let mut resume = Resume::default();
        let mut last = later(7, "198.51.100.1:443", Direction::Unconnected, RecordKind::Close, 1_794_787_300);
        (last.protocol, last.release) = (Protocol::Udp, Release::LastPeer);
        resume.apply(&mut last, &w, booted_at(0));
        let closes = resume.closes_due(&w, booted_at(0), false, super::CLOSES_PER_CALL);
        let remotes: Vec<String> = closes.iter().filter_map(|r| r.remote).map(|a| a.to_string()).collect();
        assert_eq!(remotes, ["192.0.2.2:443"], "only the peer left open");
    }

    /// A peer an earlier run journaled, closed by this run past the caps (after the restart), is
    /// not closed again at its socket's release: its close (resumed, so not a first) is indexed
    /// and the release is read after a flush (a review found a second `close`).
    #[test]
    fn a_peer_this_run_closed_past_the_caps_is_not_closed_again() {
        use crate::tracker::record::Release;
        let dir = tempdir();
        let remotes = ["192.0.2.1:53".to_string(), "192.0.2.2:53".to_string()];
        let mut w = udp_peers_before_restart(dir.path(), &remotes, Direction::Inbound, RecordKind::Update);
        let mut resume = Resume::default();
        let mut split = udp_close("192.0.2.1:53", Direction::Inbound, Release::Split, 1_794_787_300);
        resume.apply(&mut split, &w, booted_at(0));
        assert!(split.resumed && !split.is_first());
        w.append(&split, &fixtures::app("udp"), None);
        w.flush().expect("flush");
        let mut last = udp_close("198.51.100.1:53", Direction::Inbound, Release::LastPeer, 1_794_787_300);
        resume.apply(&mut last, &w, booted_at(0));
        let closes = resume.closes_due(&w, booted_at(0), false, super::CLOSES_PER_CALL);
        let remotes: Vec<String> = closes.iter().filter_map(|r| r.remote).map(|a| a.to_string()).collect();
        assert_eq!(remotes, ["192.0.2.2:53"], "only the peer no run closed");
    }

    /// A UDP server's peers from one address: the second client port's flow, in the endpoint of
    /// the first (the address), and a peer's new flow after its close past the caps continue
    /// after a restart: resumed with their own `first_seen` (a re-check and a review: neither
    /// was found, and their next records counted a new flow).
    #[test]
    fn later_flows_at_a_known_endpoint_continue_after_a_restart() {
        use crate::tracker::record::{Protocol, Release};
        let dir = tempdir();
        let mut w = writer_in(dir.path());
        let app = fixtures::app("dns");
        let udp = |mut r: crate::tracker::FlowRecord| {
            r.protocol = Protocol::Udp;
            r
        };
        let mut first = Flow::new(7, "192.0.2.1:53", at(1_794_787_200));
        first.direction = Direction::Inbound;
        w.append(&udp(first.record(RecordKind::Update, at(1_794_787_210), 100, 200)), &app, None);
        // The first flow of :53 ends past the caps, and the peer talks again.
        let mut closed = first.record(RecordKind::Close, at(1_794_787_220), 10, 20);
        closed.release = Release::Split;
        w.append(&udp(closed), &app, None);
        let mut again = Flow::new(7, "192.0.2.1:53", at(1_794_787_230));
        again.direction = Direction::Inbound;
        w.append(&udp(again.record(RecordKind::Update, at(1_794_787_240), 5, 6)), &app, None);
        let mut second = Flow::new(7, "192.0.2.1:54", at(1_794_787_250));
        second.direction = Direction::Inbound;
        w.append(&udp(second.record(RecordKind::Update, at(1_794_787_260), 7, 8)), &app, None);
        w.flush().expect("flush");
        drop(w);
        let w = writer_restarted(dir.path(), 1_794_787_280);
        for (remote, first_seen) in [("192.0.2.1:53", 1_794_787_230), ("192.0.2.1:54", 1_794_787_250)] {
            let mut r = udp(later(7, remote, Direction::Unknown, RecordKind::Update, 1_794_787_300));
            Resume::default().apply(&mut r, &w, booted_at(0));
            assert!(r.resumed, "{remote} continues: {r:#?}");
            assert_eq!((r.direction, r.first_seen), (Direction::Inbound, at(first_seen)), "{remote}");
        }
    }

    /// A peer this run closed past the caps (resumed, so its close is indexed) that talks again
    /// after the sink's cache forgot it starts a new flow: not resumed, its own `first_seen` (a
    /// re-check: it continued the closed flow and closed it a second time).
    #[test]
    fn a_peer_closed_past_the_caps_that_talks_again_is_a_new_flow() {
        use crate::tracker::record::Release;
        let dir = tempdir();
        let remotes = ["192.0.2.1:53".to_string()];
        let mut w = udp_peers_before_restart(dir.path(), &remotes, Direction::Inbound, RecordKind::Update);
        let mut split = udp_close("192.0.2.1:53", Direction::Inbound, Release::Split, 1_794_787_300);
        Resume::default().apply(&mut split, &w, booted_at(0));
        assert!(split.resumed);
        w.append(&split, &fixtures::app("udp"), None);
        w.flush().expect("flush");
        // The cache no longer holds the peer: a fresh one asks the journal.
        let mut again = udp_close("192.0.2.1:53", Direction::Inbound, Release::No, 1_794_787_400);
        Resume::default().apply(&mut again, &w, booted_at(0));
        assert!(!again.resumed, "a new flow: {again:#?}");
        assert_eq!(again.first_seen, at(1_794_787_400));
    }
}
