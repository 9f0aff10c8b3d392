//! Giving memory back after a backlog.
//!
//! Events and records wait in the daemon's queues while a later stage is behind: the tracker
//! during a refresh pass by descriptor (a second or more with 100,000 open sockets: `info` log
//! `snapshot ... took_ms`), the sink during a burst of short connections. The queued batches are
//! allocated on one thread and freed on another, among flows allocated meanwhile; the allocator
//! keeps the freed pages (it returns only the top of a heap), so without a trim the daemon's
//! resident memory stays at the backlog's peak (measured: 84 MiB instead of 45 with 100,000 open
//! sockets and a refresh pass every 2 s while they opened, `cargo xtask bench --only sockets`).
//! Records handed to the journal leave the same holes once written (a refresh that finds 100,000
//! open flows changed sends as many `update` records at once), so many records count as a
//! backlog too. Once the queues are short again, [`Trim::tick`] releases the free pages
//! ([`crate::sys::trim_heap`]): at most once per [`RECORDS_PER_TRIM`] records under a steady
//! churn, each trim taking about a millisecond (debug log `heap trimmed ... took_us`).

use std::time::Instant;

/// Tracker queue depth (event batches) that counts as a backlog.
const DEEP_EVENT_BATCHES: usize = 4;
/// Sink queue depth (records) that counts as a backlog.
const DEEP_SINK_RECORDS: usize = 16_384;
/// Sink queue depth at or below which a backlog is over.
const SETTLED_SINK_RECORDS: usize = 1_024;

/// Records handed to the sink since the last trim that count as a backlog.
const RECORDS_PER_TRIM: usize = 50_000;

/// Whether a backlog has been seen since the last trim.
#[derive(Debug, Default)]
pub struct Trim {
    pending: bool,
    /// Records handed to the sink since the last trim.
    records: usize,
}

impl Trim {
    /// Notes a backlog the depths cannot show yet (events waited during a slow refresh pass).
    pub fn backlog(&mut self) {
        self.pending = true;
    }

    /// Counts records handed to the sink.
    pub fn records(&mut self, n: usize) {
        self.records = self.records.saturating_add(n);
        if self.records >= RECORDS_PER_TRIM {
            self.pending = true;
        }
    }

    /// Called once per tick with the queues' depths: notes a backlog, and trims the heap once a
    /// noted backlog has been worked off. Returns whether it trimmed.
    pub fn tick(&mut self, event_batches: usize, sink_records: usize) -> bool {
        if event_batches >= DEEP_EVENT_BATCHES || sink_records >= DEEP_SINK_RECORDS {
            self.pending = true;
            return false;
        }
        if !self.pending || event_batches > 0 || sink_records > SETTLED_SINK_RECORDS {
            return false;
        }
        self.pending = false;
        self.records = 0;
        let started = Instant::now();
        let released = crate::sys::trim_heap();
        log::debug!("heap trimmed after a backlog released={released} took_us={}", started.elapsed().as_micros());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_once_after_a_backlog_is_worked_off() {
        let mut t = Trim::default();
        assert!(!t.tick(0, 0), "no backlog, no trim");
        assert!(!t.tick(DEEP_EVENT_BATCHES, 0), "still deep");
        assert!(!t.tick(1, 0), "events still queued");
        assert!(!t.tick(0, SETTLED_SINK_RECORDS + 1), "records still queued");
        assert!(t.tick(0, SETTLED_SINK_RECORDS), "worked off");
        assert!(!t.tick(0, 0), "once per backlog");
        assert!(!t.tick(0, DEEP_SINK_RECORDS), "a sink backlog");
        assert!(t.tick(0, 0));
        t.backlog();
        assert!(t.tick(0, 0), "a backlog noted by the loop");
        t.records(RECORDS_PER_TRIM - 1);
        assert!(!t.tick(0, 0), "fewer records than a backlog");
        t.records(1);
        assert!(t.tick(0, 0), "many records written");
        assert!(!t.tick(0, 0), "counted again from zero");
    }
}
