//! The sink's first step for a record: a flow of a socket older than this run, whose direction
//! the kernel could not give, that an earlier run journaled (the daemon was restarted while the
//! connection stayed open) continues that flow: it takes the direction the journal knows and is
//! not a new flow ([`FlowRecord::resumed`]). Without this a restart made every open connection a
//! new flow of direction `unknown` (a server's connection then listed under its client's port, a
//! second endpoint, "new").

use std::num::NonZeroUsize;

use log::debug;
use lru::LruCache;

use crate::{
    errors::chain,
    journal::JournalWriter,
    tracker::{FlowRecord, record::Direction},
};

/// Sockets whose answer is kept: the records of an older socket all ask (their direction stays
/// unknown in the tracker), and such sockets are few.
const CACHED: NonZeroUsize = NonZeroUsize::new(4096).expect("non-zero");

/// The journal's answers per socket cookie.
pub struct Resume {
    known: LruCache<u64, Option<Direction>>,
}

impl Default for Resume {
    fn default() -> Self {
        Self { known: LruCache::new(CACHED) }
    }
}

impl Resume {
    /// Gives `record` the direction an earlier run journaled for its socket, and marks it
    /// resumed, when the kernel gave it none. A journal that cannot answer leaves it as it is.
    pub fn apply(&mut self, record: &mut FlowRecord, journal: &JournalWriter) {
        if record.direction != Direction::Unknown {
            return;
        }
        let cookie = record.cookie;
        let earlier = match self.known.get(&cookie) {
            Some(known) => *known,
            None => {
                let found = journal.earlier_direction(cookie).unwrap_or_else(|e| {
                    debug!("earlier direction of cookie {cookie}: {}", chain(&e));
                    None
                });
                self.known.put(cookie, found);
                found
            }
        };
        if let Some(direction) = earlier {
            record.direction = direction;
            record.resumed = true;
        }
        if record.final_of_socket {
            self.known.pop(&cookie);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Resume;
    use crate::{
        journal::tests::{
            fixtures::{self, Flow, at},
            tempdir, writer_in,
        },
        tracker::record::{Direction, RecordKind},
    };

    /// A connection open across a restart: the new run's first record of it (direction unknown,
    /// its totals its deltas) takes the journaled direction and is no new flow; a socket the
    /// journal never saw, and one with a direction, are left as they are.
    #[test]
    fn a_flow_journaled_by_an_earlier_run_continues() {
        let dir = tempdir();
        let mut w = writer_in(dir.path());
        let app = fixtures::app("server");
        let mut before = Flow::new(7, "192.0.2.1:50000", at(1_794_787_200));
        before.direction = Direction::Inbound;
        w.append(&before.record(RecordKind::Shutdown, at(1_794_787_260), 100, 200), &app, None);
        w.flush().expect("flush");

        let mut resume = Resume::default();
        let mut after = Flow::new(7, "192.0.2.1:50000", at(1_794_787_300));
        after.direction = Direction::Unknown;
        let mut r = after.record(RecordKind::Update, at(1_794_787_310), 10, 20);
        assert!(r.is_first());
        resume.apply(&mut r, &w);
        assert_eq!((r.direction, r.resumed, r.is_first()), (Direction::Inbound, true, false));

        let mut other = Flow::new(9, "192.0.2.9:443", at(1_794_787_300));
        other.direction = Direction::Unknown;
        let mut r = other.record(RecordKind::Update, at(1_794_787_310), 10, 20);
        resume.apply(&mut r, &w);
        assert_eq!((r.direction, r.resumed, r.is_first()), (Direction::Unknown, false, true));

        let mut fresh = Flow::new(7, "192.0.2.1:50000", at(1_794_787_300));
        fresh.direction = Direction::Outbound;
        let mut r = fresh.record(RecordKind::Update, at(1_794_787_310), 10, 20);
        resume.apply(&mut r, &w);
        assert!(!r.resumed && r.is_first(), "a flow with a direction is its own");
    }
}
