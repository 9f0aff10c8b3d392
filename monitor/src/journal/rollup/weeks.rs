//! ISO weeks in the rollup time zone: which week an instant falls in.
//!
//! A week runs from Monday 00:00 local time to the next Monday 00:00, computed by
//! [`crate::week`] as `report::Period` does, so a rollup week and a report week have the same
//! bounds. This module only adds a small cache (records arrive in time order).

use jiff::{Timestamp, tz::TimeZone};

use crate::week;

/// One week: `[start, end)` in Unix seconds. `start` is the key of the rollup rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Week {
    /// Monday 00:00 local time, Unix seconds.
    pub start: i64,
    /// The next Monday 00:00 local time, Unix seconds.
    pub end: i64,
}

impl Week {
    /// `start` in Unix milliseconds.
    pub fn start_ms(self) -> i64 {
        self.start.saturating_mul(1000)
    }

    /// `end` in Unix milliseconds.
    pub fn end_ms(self) -> i64 {
        self.end.saturating_mul(1000)
    }
}

/// Week lookups in one time zone, remembering the last few weeks (records arrive in time order,
/// so nearly every lookup hits).
#[derive(Debug, Clone)]
pub(crate) struct Weeks {
    tz: TimeZone,
    recent: Vec<Week>,
}

/// Weeks remembered by [`Weeks`].
const RECENT: usize = 4;

impl Weeks {
    pub fn new(tz: TimeZone) -> Self {
        Self { tz, recent: Vec::with_capacity(RECENT) }
    }

    /// The week containing Unix second `secs`; `None` outside the range jiff represents.
    pub fn containing(&mut self, secs: i64) -> Option<Week> {
        if let Some(w) = self.recent.iter().find(|w| w.start <= secs && secs < w.end) {
            return Some(*w);
        }
        let mut week = self.compute(secs)?;
        // Guard against zones whose Monday midnight is skipped or repeated: the bounds decide.
        while secs < week.start {
            week = self.compute(week.start.checked_sub(1)?)?;
        }
        while secs >= week.end {
            week = self.compute(week.end)?;
        }
        if self.recent.len() == RECENT {
            self.recent.remove(0);
        }
        self.recent.push(week);
        Some(week)
    }

    /// The week containing Unix millisecond `ms`.
    pub fn containing_ms(&mut self, ms: i64) -> Option<Week> {
        self.containing(ms.div_euclid(1000))
    }

    /// The week before `week`.
    pub fn previous(&mut self, week: Week) -> Option<Week> {
        self.containing(week.start.checked_sub(1)?)
    }

    /// The week after `week`.
    pub fn next(&mut self, week: Week) -> Option<Week> {
        self.containing(week.end)
    }

    fn compute(&self, secs: i64) -> Option<Week> {
        let t = Timestamp::from_second(secs).ok()?;
        let (start, end) = week::bounds(week::monday_of(t, &self.tz).ok()?, &self.tz).ok()?;
        Some(Week { start: start.as_second(), end: end.as_second() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weeks(tz: &str) -> Weeks {
        Weeks::new(TimeZone::get(tz).expect("zone"))
    }

    #[test]
    fn weeks_follow_the_time_zone_and_its_dst_changes() {
        // 2026-11-16T00:00:00Z is Monday of 2026-W47 in UTC.
        let mut utc = weeks("UTC");
        let w = utc.containing(1_794_787_200).expect("week");
        assert_eq!(w, Week { start: 1_794_787_200, end: 1_794_787_200 + 7 * 86_400 });
        assert_eq!(utc.containing(1_794_787_199).expect("week").end, w.start);
        assert_eq!(utc.previous(w).expect("previous").end, w.start);
        assert_eq!(utc.next(w).expect("next").start, w.end);
        // New York, 2026-W44 lasts 169 hours (DST ends on Sunday 2026-11-01).
        let mut ny = weeks("America/New_York");
        let w44 = ny.containing(1_793_593_800).expect("week");
        assert_eq!((w44.start, w44.end), (1_792_987_200, 1_793_595_600));
        assert_eq!(w44.end - w44.start, 169 * 3600);
        assert_eq!(ny.containing_ms(1_793_595_600_000).expect("week").start, w44.end);
        assert_eq!(ny.containing_ms(1_793_595_599_999).expect("week"), w44);
    }
}
