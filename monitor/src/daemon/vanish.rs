//! Ending flows whose sockets are gone without their end reaching the daemon (a lost or skipped
//! release, or no release hook; see `tracker::vanish`): every [`CHECK_EVERY`] update intervals
//! the sockets of such idle flows are looked for in every process's descriptors, and those found
//! nowhere at two checks in a row, with no event in between, end with an incomplete `close`.

use log::warn;

use super::{pipeline::Stages, source::EventSource};

/// Update intervals between two checks (30 s at the default interval of 10 s), on the event
/// clock: refreshes that come in a burst (a daemon stopped and continued) make no checks a moment
/// apart, and an event still queued when a check ran reaches the tracker before the next.
pub(super) const CHECK_EVERY: u64 = 3;

/// The last check: when it ran (event clock), and the sockets it found in no process.
#[derive(Debug, Default)]
pub(super) struct Vanish {
    /// When the last check ran; `None` before the first.
    checked_at: Option<u64>,
    /// The sockets the last check found in no process.
    unfound: Vec<u64>,
    /// The host cannot look for sockets by descriptor: no more checks.
    unable: bool,
}

impl Vanish {
    /// At each refresh of idle flows: a check when one is due; returns the records written.
    pub(super) fn refresh<S: EventSource>(&mut self, st: &mut Stages<S>) -> usize {
        let now = st.source.now_ns();
        let interval = u64::try_from(st.tracker.update_interval().as_nanos()).unwrap_or(u64::MAX);
        // Less half an interval: the refresh before the check takes time, so a check due at a
        // refresh must not wait for the next one (an adversarial pass: every fourth interval).
        let every = interval.saturating_mul(CHECK_EVERY).saturating_sub(interval / 2);
        if self.unable || self.checked_at.is_some_and(|at| now.saturating_sub(at) < every) {
            return 0;
        }
        let previous = self.checked_at.replace(now);
        let unfound = std::mem::take(&mut self.unfound);
        let candidates = st.tracker.vanish_candidates(now.saturating_sub(interval));
        if candidates.is_empty() {
            return 0;
        }
        let Some(mut nowhere) = st.source.held_by_none(&candidates) else {
            self.unable = true;
            return 0;
        };
        nowhere.sort_unstable();
        // Found nowhere at the last check too, and idle since it.
        let confirmed: Vec<u64> = match previous {
            Some(at) => unfound
                .into_iter()
                .filter(|c| nowhere.binary_search(c).is_ok() && st.tracker.idle_since(*c, at))
                .collect(),
            None => Vec::new(),
        };
        let mut written = 0;
        if !confirmed.is_empty() {
            written = st.tracker.vanished(&confirmed, &mut st.records);
            warn!(
                "{} sockets are gone without their end reaching the monitor (events lost, a release the kernel did not \
                 run, or no release hook): their flows end now with {written} incomplete close records",
                confirmed.len()
            );
        }
        nowhere.retain(|c| confirmed.binary_search(c).is_err());
        self.unfound = nowhere;
        written
    }
}
