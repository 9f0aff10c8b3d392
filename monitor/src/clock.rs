//! Kernel timestamps (`CLOCK_BOOTTIME` nanoseconds) to wall-clock time.

use jiff::Timestamp;
use nix::time::{ClockId, clock_gettime};

/// Offset between the boot-time clock used by the kernel programs and the wall clock, taken
/// once at start (the monitor does not follow later wall-clock steps).
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// Wall-clock nanoseconds at boot-time zero.
    offset_ns: i128,
}

/// Nanoseconds of `clock`. Both clocks used here exist on every kernel the monitor supports,
/// so `clock_gettime` cannot fail; if it did, the reading is 0.
fn ns(clock: ClockId) -> i128 {
    clock_gettime(clock).map_or(0, |ts| i128::from(ts.tv_sec()) * 1_000_000_000 + i128::from(ts.tv_nsec()))
}

impl Clock {
    /// Reads both clocks now.
    #[must_use]
    pub fn now() -> Self {
        let boot = ns(ClockId::CLOCK_BOOTTIME);
        let wall = ns(ClockId::CLOCK_REALTIME);
        Self { offset_ns: wall - boot }
    }

    /// A clock with a fixed offset (tests).
    #[must_use]
    pub fn with_offset(offset_ns: i128) -> Self {
        Self { offset_ns }
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

    /// Wall-clock time of a kernel timestamp.
    #[must_use]
    pub fn wall(self, boot_ns: u64) -> Timestamp {
        Timestamp::from_nanosecond(i128::from(boot_ns) + self.offset_ns).unwrap_or(Timestamp::UNIX_EPOCH)
    }
}
