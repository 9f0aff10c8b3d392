//! systemd notifications for `Type=notify` (`config/monitor.service`), via `$NOTIFY_SOCKET`:
//! - `READY=1` once the programs are attached and the journal is open (the pipeline starts);
//! - `STATUS=` with flows and losses at every statistics interval;
//! - `WATCHDOG=1` from the sink's one-second tick, which exists only while the tracker loop
//!   sends ticks *and* the sink works them off: a stuck loop or a sink blocked on the journal
//!   stops the pings and systemd restarts the service (`WatchdogSec=`);
//! - `STOPPING=1` when shutdown begins.
//!
//! Every call is a no-op without `$NOTIFY_SOCKET` (not started by systemd); a failed send is
//! logged once at `debug` and otherwise ignored (notifications are advisory).

use std::time::{Duration, Instant};

use log::{debug, warn};
use sd_notify::NotifyState;

use crate::stats::Stats;

/// Watchdog pings are sent this many times per `WATCHDOG_USEC` (systemd recommends at least 2).
const PINGS_PER_PERIOD: u32 = 4;
/// Shortest watchdog period that the one-second sink tick can honour.
const SHORTEST_WATCHDOG: Duration = Duration::from_secs(3);

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(false, states) {
        debug!("systemd notification failed: {e}");
    }
}

/// `READY=1` with a first `STATUS=`.
pub fn ready() {
    send(&[NotifyState::Ready, NotifyState::Status("attached; waiting for the first statistics")]);
}

/// `STOPPING=1`.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping: draining events and flushing the journal")]);
}

/// The `STATUS=` line for `stats` (also shown by `systemctl status monitor`).
pub fn status_line(stats: &Stats, records: u64) -> String {
    format!(
        "flows open={} closed={} records={records} events lost={} decode errors={} unattributed bytes={}",
        stats.tracker.open_flows,
        stats.tracker.closed_flows,
        stats.kernel.events_lost,
        stats.decode_errors,
        stats.kernel.unattributed_bytes,
    )
}

/// `STATUS=` with flows and losses.
pub fn status(stats: &Stats, records: u64) {
    send(&[NotifyState::Status(&status_line(stats, records))]);
}

/// The watchdog as `WATCHDOG_USEC`/`WATCHDOG_PID` configure it for this process.
#[derive(Debug)]
pub struct Watchdog {
    /// Time between pings; `None`: no watchdog.
    every: Option<Duration>,
    last: Option<Instant>,
}

impl Watchdog {
    /// Reads `WATCHDOG_USEC` (and `WATCHDOG_PID`, which must be this process).
    pub fn from_env() -> Self {
        let mut usec = 0;
        if !sd_notify::watchdog_enabled(false, &mut usec) {
            return Self { every: None, last: None };
        }
        let period = Duration::from_micros(usec);
        if period < SHORTEST_WATCHDOG {
            warn!(
                "WatchdogSec={} ms is shorter than {} s: the one-second pipeline tick may miss it",
                period.as_millis(),
                SHORTEST_WATCHDOG.as_secs()
            );
        }
        Self { every: Some(period / PINGS_PER_PERIOD), last: None }
    }

    /// Whether a watchdog is configured.
    pub fn enabled(&self) -> bool {
        self.every.is_some()
    }

    /// Sends `WATCHDOG=1` when due; called from the sink's tick.
    pub fn tick(&mut self, now: Instant) {
        let Some(every) = self.every else { return };
        // A quarter of slack: the sink's one-second tick jitters, and a tick a millisecond early
        // must not skip a ping (pinging a little more often than needed is harmless).
        if self.last.is_none_or(|last| now.duration_since(last) >= every - every / 4) {
            self.last = Some(now);
            send(&[NotifyState::Watchdog]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_line_names_flows_and_losses() {
        let mut stats = Stats::default();
        stats.tracker.open_flows = 3;
        stats.tracker.closed_flows = 7;
        stats.kernel.events_lost = 2;
        stats.decode_errors = 1;
        stats.kernel.unattributed_bytes = 120;
        assert_eq!(
            status_line(&stats, 10),
            "flows open=3 closed=7 records=10 events lost=2 decode errors=1 unattributed bytes=120"
        );
    }

    #[test]
    fn watchdog_pings_at_a_quarter_of_its_period() {
        let mut w = Watchdog { every: Some(Duration::from_secs(30) / PINGS_PER_PERIOD), last: None };
        let t0 = Instant::now();
        w.tick(t0);
        assert_eq!(w.last, Some(t0));
        w.tick(t0 + Duration::from_secs(5));
        assert_eq!(w.last, Some(t0), "5 s < 7.5 s less a quarter of slack: not due");
        w.tick(t0 + Duration::from_millis(5700));
        assert_eq!(w.last, Some(t0 + Duration::from_millis(5700)), "a tick a little early still pings");
        let mut off = Watchdog { every: None, last: None };
        off.tick(t0);
        assert!(!off.enabled() && off.last.is_none());
    }
}
