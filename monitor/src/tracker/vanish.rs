//! Flows whose sockets are gone without their end reaching the tracker: the `Release` was lost
//! with a full ring buffer, the kernel did not run `cgroup/sock_release` (rarely seen, see
//! BENCHMARKS), or there is no release hook (degradation `no_release_hook`: a UDP, ping or raw
//! socket's flow has no end at all). Such a flow stayed open until the daemon's shutdown (a
//! review). The daemon lists the ones that may be gone ([`Tracker::vanish_candidates`]), looks
//! for their sockets in every process's descriptors, and ends those found nowhere twice, a check
//! apart, and idle all along ([`Tracker::vanished`]).

use super::{FlowKey, FlowRecord, Tracker, record::Protocol, record::RecordKind};

impl Tracker {
    /// Open sockets (not released, with their owners) idle since `idle_since_ns` whose end may
    /// never come: those open when the kernel lost events ([`Self::events_lost`]), every one
    /// without release events, and TCP connections closed (`TCP_CLOSE`) that were never
    /// released.
    #[must_use]
    pub fn vanish_candidates(&self, idle_since_ns: u64) -> Vec<crate::probe::OpenSocket> {
        let lost_at = self.lost_at;
        let no_release = !self.config.release_events;
        self.open_where(|_, flow| {
            flow.last_ns < idle_since_ns
                && (no_release
                    || lost_at.is_some_and(|at| flow.first_ns <= at)
                    || (flow.protocol == Protocol::Tcp && flow.tcp_closed()))
        })
    }

    /// Ends every flow of the sockets `cookies` (their peers' too), found in no process: `close`
    /// records with the counters of their last events, counted in `vanished_flows`. They are
    /// marked incomplete (and counted in `incomplete_flows`: what moved after those events is
    /// unknown), except without release events where nothing was lost since the socket's first
    /// event: there every read and write of a socket other than TCP is an event (the fallback
    /// hooks), so its last event is final. A socket released or ended meanwhile is skipped. A
    /// socket that shows up again after all (held only by an io_uring or a message in flight)
    /// continues its own flow from its record's totals (a TCP connection's records say so:
    /// [`FlowRecord::resumed`]); its peers' flows start again. Returns the records written.
    pub fn vanished(&mut self, cookies: &[u64], out: &mut Vec<FlowRecord>) -> usize {
        let first = out.len();
        for &cookie in cookies {
            if !self.socket_open(cookie) {
                continue;
            }
            let socket = FlowKey { cookie, peer: None };
            let first_ns = self.flows.get(&socket).map_or(0, |f| f.first_ns);
            let exact = !self.config.release_events && self.lost_at.is_none_or(|at| first_ns > at);
            let before = out.len();
            let changed = self.changed.remove(&cookie);
            if let Some(peers) = self.peers.remove(&cookie) {
                for peer in peers {
                    self.finish(peer, RecordKind::Close, true, out);
                }
                // The socket only contains its peers (as at a release).
                self.flows.remove(&socket);
                self.resolved.remove(&cookie);
                self.older_bases.forget(cookie);
            } else if changed || self.flows.get(&socket).is_some_and(|f| self.per_peer_socket(f)) {
                self.finish_whole(socket, out);
            } else {
                self.finish(socket, RecordKind::Close, true, out);
            }
            // A socket's own record (not its peers'): a socket that shows up again continues it
            // (a closed TCP connection too: it may sit in a message in flight, and its release
            // or a read at shutdown would count it again: an adversarial pass).
            if out.len() == before + 1
                && let Some(r) = out.last()
                && !r.of_one_peer()
            {
                let (reported, direction) = ((r.payload, r.wire), r.direction);
                self.remember_ended_early(cookie, reported, direction);
            }
            for r in out.iter_mut().skip(before) {
                if r.complete && !exact {
                    r.complete = false;
                    self.stats.incomplete_flows += 1;
                }
            }
        }
        let written = out.len() - first;
        self.stats.vanished_flows += written as u64;
        written
    }
}
