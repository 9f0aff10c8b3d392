//! Kernel timestamps (`CLOCK_BOOTTIME` nanoseconds) to wall-clock time.

use jiff::Timestamp;
use nix::time::{ClockId, clock_gettime};

/// Offset between the boot-time clock used by the kernel programs and the wall clock, taken
/// once at start (the monitor does not follow later wall-clock steps: the daemon's tick warns of
/// one, [`Clock::wall_step_ns`]).
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// Wall-clock nanoseconds at boot-time zero.
    offset_ns: i128,
    /// This clock's boot time minus `CLOCK_BOOTTIME`: 0, except for test clocks, whose boot time
    /// is a chosen one ([`Clock::with_offset`]).
    boot_shift_ns: i128,
}

/// Nanoseconds of `clock`. Both clocks used here exist on every kernel the monitor supports,
/// so `clock_gettime` cannot fail; if it did, the reading is 0.
fn ns(clock: ClockId) -> i128 {
    clock_gettime(clock).map_or(0, |ts| i128::from(ts.tv_sec()) * 1_000_000_000 + i128::from(ts.tv_nsec()))
}

/// CPU time the calling thread has used so far (`CLOCK_THREAD_CPUTIME_ID`); zero if it cannot be
/// read.
#[must_use]
pub fn thread_cpu() -> std::time::Duration {
    std::time::Duration::from_nanos(u64::try_from(ns(ClockId::CLOCK_THREAD_CPUTIME_ID)).unwrap_or(0))
}

impl Clock {
    /// Reads both clocks now.
    #[must_use]
    pub fn now() -> Self {
        let boot = ns(ClockId::CLOCK_BOOTTIME);
        let wall = ns(ClockId::CLOCK_REALTIME);
        Self { offset_ns: wall - boot, boot_shift_ns: 0 }
    }

    /// A clock with a fixed offset (tests): its boot time is the wall clock less `offset_ns`,
    /// and runs on from there at the pace of `CLOCK_BOOTTIME`.
    #[must_use]
    pub fn with_offset(offset_ns: i128) -> Self {
        let boot_shift_ns = ns(ClockId::CLOCK_REALTIME) - offset_ns - ns(ClockId::CLOCK_BOOTTIME);
        Self { offset_ns, boot_shift_ns }
    }

    /// Boot-time nanoseconds now, read from `CLOCK_BOOTTIME` (in a test clock's own boot time):
    /// unlike `boot_ns_of(Timestamp::now())`, untouched by wall-clock steps after start.
    #[must_use]
    pub fn boot_now(self) -> u64 {
        u64::try_from(ns(ClockId::CLOCK_BOOTTIME) + self.boot_shift_ns).unwrap_or(0)
    }

    /// Current boot-time nanoseconds.
    #[must_use]
    pub fn boot_ns() -> u64 {
        u64::try_from(ns(ClockId::CLOCK_BOOTTIME)).unwrap_or(0)
    }

    /// Boot-time nanoseconds of a wall-clock time (inverse of [`Clock::wall`]).
    #[must_use]
    pub fn boot_ns_of(self, wall: Timestamp) -> u64 {
        u64::try_from(wall.as_nanosecond() - self.offset_ns).unwrap_or(0)
    }

    /// How far the wall clock has been stepped since this clock was read (nanoseconds, later
    /// positive): a step the monitor's times do not follow (NTP setting the clock after a boot
    /// without a real-time clock, a restored VM, an operator's `date -s`).
    #[must_use]
    pub fn wall_step_ns(self) -> i128 {
        ns(ClockId::CLOCK_REALTIME) - (ns(ClockId::CLOCK_BOOTTIME) + self.boot_shift_ns) - self.offset_ns
    }

    /// Wall-clock time of a kernel timestamp.
    #[must_use]
    pub fn wall(self, boot_ns: u64) -> Timestamp {
        Timestamp::from_nanosecond(i128::from(boot_ns) + self.offset_ns).unwrap_or(Timestamp::UNIX_EPOCH)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With the wall clock left alone, neither a real nor a test clock sees a step.
    #[test]
    fn an_unstepped_wall_clock_shows_no_step() {
        for clock in [Clock::now(), Clock::with_offset(1_000_000_000_000)] {
            assert!(clock.wall_step_ns().abs() < 50_000_000, "{}", clock.wall_step_ns());
        }
        // A clock read as if the wall clock had been an hour behind at its start.
        let mut behind = Clock::now();
        behind.offset_ns -= 3_600_000_000_000;
        assert!((behind.wall_step_ns() - 3_600_000_000_000).abs() < 50_000_000, "{}", behind.wall_step_ns());
    }

    /// `boot_now` is `CLOCK_BOOTTIME` for the real clock, and a test clock's own boot time (the
    /// wall clock less its offset) for a test clock.
    #[test]
    fn boot_now_follows_the_boot_clock_in_each_clocks_own_boot_time() {
        const MS: u64 = 1_000_000;
        let real = Clock::now();
        let (before, now, after) = (Clock::boot_ns(), real.boot_now(), Clock::boot_ns());
        assert!(before <= now && now <= after, "{before} <= {now} <= {after}");
        let base: u64 = 30 * 24 * 3600 * 1_000_000_000;
        let test = Clock::with_offset(Timestamp::now().as_nanosecond() - i128::from(base));
        let (now, via_wall) = (test.boot_now(), test.boot_ns_of(Timestamp::now()));
        assert!(now.abs_diff(base) < 1000 * MS, "starts near its chosen boot time: {now}");
        assert!(now.abs_diff(via_wall) < 50 * MS, "{now} vs {via_wall}");
    }
}
