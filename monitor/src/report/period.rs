//! Report periods: ISO 8601 weeks cut in a time zone, or explicit instants.

use jiff::{
    SignedDuration, Timestamp,
    civil::{Date, ISOWeekDate, Weekday},
    tz::TimeZone,
};
use serde::Serialize;

use super::Error;
use crate::journal::TimeRange;

/// How a period was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PeriodKind {
    /// An ISO week: Monday 00:00 to the next Monday 00:00, local time.
    IsoWeek,
    /// Explicit `since`/`until`.
    Range,
}

/// A half-open period `[since, until)` and the time zone it is shown in.
#[derive(Debug, Clone, PartialEq)]
pub struct Period {
    /// "2026-W47", or `"<since>/<until>"` (RFC 3339) for a range.
    pub label: String,
    /// Week or range.
    pub kind: PeriodKind,
    /// First instant included.
    pub since: Timestamp,
    /// First instant excluded.
    pub until: Timestamp,
    /// Time zone of the week boundaries and of local times in reports.
    pub time_zone: TimeZone,
    /// IANA name of `time_zone`.
    pub time_zone_name: String,
}

impl Period {
    /// The ISO week `week` ("2026-W47") in `time_zone` (an IANA name).
    ///
    /// # Errors
    /// [`Error::Week`] for a malformed or nonexistent week, [`Error::TimeZone`].
    pub fn iso_week(week: &str, time_zone: &str) -> Result<Self, Error> {
        let tz = super::config::time_zone(time_zone)?;
        let bad = |reason: &str| Error::Week { week: week.to_string(), reason: reason.to_string() };
        let (year, w) = week.split_once("-W").ok_or_else(|| bad("no `-W`"))?;
        if year.len() != 4 || w.len() != 2 {
            return Err(bad("expected YYYY-Www"));
        }
        let year: i16 = year.parse().map_err(|_| bad("year is not a number"))?;
        let w: i8 = w.parse().map_err(|_| bad("week is not a number"))?;
        let monday = ISOWeekDate::new(year, w, Weekday::Monday).map_err(|e| bad(&e.to_string()))?.date();
        Self::week_from_monday(monday, tz, time_zone)
    }

    /// The ISO week containing `t` in `time_zone`.
    ///
    /// # Errors
    /// [`Error::TimeZone`], or [`Error::Period`] at the ends of the representable range.
    pub fn week_containing(t: Timestamp, time_zone: &str) -> Result<Self, Error> {
        let tz = super::config::time_zone(time_zone)?;
        let monday = crate::week::monday_of(t, &tz).map_err(|e| Error::Period { reason: e.to_string() })?;
        Self::week_from_monday(monday, tz, time_zone)
    }

    /// Explicit instants; shown in `time_zone`.
    ///
    /// # Errors
    /// [`Error::Period`] when `until` is not after `since`, [`Error::TimeZone`].
    pub fn range(since: Timestamp, until: Timestamp, time_zone: &str) -> Result<Self, Error> {
        let tz = super::config::time_zone(time_zone)?;
        if until <= since {
            return Err(Error::Period { reason: format!("until ({until}) is not after since ({since})") });
        }
        Ok(Self {
            label: format!("{since}/{until}"),
            kind: PeriodKind::Range,
            since,
            until,
            time_zone: tz,
            time_zone_name: time_zone.to_string(),
        })
    }

    fn week_from_monday(monday: Date, tz: TimeZone, name: &str) -> Result<Self, Error> {
        let (since, until) =
            crate::week::bounds(monday, &tz).map_err(|e| Error::Period { reason: e.to_string() })?;
        Ok(Self {
            label: crate::week::label(monday),
            kind: PeriodKind::IsoWeek,
            since,
            until,
            time_zone: tz,
            time_zone_name: name.to_string(),
        })
    }

    /// The period before this one: the previous ISO week, or the range of equal length ending
    /// where this one starts.
    ///
    /// # Errors
    /// [`Error::Period`] at the ends of the representable range.
    pub fn previous(&self) -> Result<Self, Error> {
        match self.kind {
            PeriodKind::IsoWeek => {
                let prev = self
                    .since
                    .checked_sub(SignedDuration::from_hours(24))
                    .map_err(|e| Error::Period { reason: e.to_string() })?;
                Self::week_containing(prev, &self.time_zone_name)
            }
            PeriodKind::Range => {
                let len = self.until.duration_since(self.since);
                let since = self.since.checked_sub(len).map_err(|e| Error::Period { reason: e.to_string() })?;
                Self::range(since, self.since, &self.time_zone_name)
            }
        }
    }

    /// The ISO week after this one (for weeks; a range returns the range of equal length after it).
    ///
    /// # Errors
    /// [`Error::Period`] at the ends of the representable range.
    pub fn next(&self) -> Result<Self, Error> {
        match self.kind {
            PeriodKind::IsoWeek => {
                let next = self
                    .until
                    .checked_add(SignedDuration::from_hours(24))
                    .map_err(|e| Error::Period { reason: e.to_string() })?;
                Self::week_containing(next, &self.time_zone_name)
            }
            PeriodKind::Range => {
                let len = self.until.duration_since(self.since);
                let until = self.until.checked_add(len).map_err(|e| Error::Period { reason: e.to_string() })?;
                Self::range(self.until, until, &self.time_zone_name)
            }
        }
    }

    /// `[since, until)` for journal queries.
    #[must_use]
    pub fn time_range(&self) -> TimeRange {
        TimeRange { since: self.since, until: self.until }
    }

    /// `t` as local time in the period's zone, RFC 3339 with offset (e.g. 2026-11-16T00:00:00-05:00).
    #[must_use]
    pub fn local(&self, t: Timestamp) -> String {
        t.to_zoned(self.time_zone.clone()).strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn iso_week_boundaries_follow_the_time_zone() {
        let w = Period::iso_week("2026-W47", "America/New_York").expect("week");
        assert_eq!((w.since, w.until), (ts("2026-11-16T05:00:00Z"), ts("2026-11-23T05:00:00Z")));
        assert_eq!(w.local(w.since), "2026-11-16T00:00:00-05:00");
        let utc = Period::iso_week("2026-W47", "UTC").expect("week");
        assert_eq!((utc.since, utc.until), (ts("2026-11-16T00:00:00Z"), ts("2026-11-23T00:00:00Z")));
        // Week 1 of 2027 starts on Monday 2027-01-04; 2026-W53 exists (2026 ends on a Thursday).
        let w1 = Period::iso_week("2027-W01", "UTC").expect("week");
        assert_eq!(w1.since, ts("2027-01-04T00:00:00Z"));
        assert_eq!(Period::iso_week("2026-W53", "UTC").expect("week").until, w1.since);
    }

    #[test]
    fn a_week_with_a_dst_change_lasts_169_hours() {
        // US daylight saving time ends on Sunday 2026-11-01 02:00 local time.
        let w = Period::iso_week("2026-W44", "America/New_York").expect("week");
        assert_eq!((w.since, w.until), (ts("2026-10-26T04:00:00Z"), ts("2026-11-02T05:00:00Z")));
        assert_eq!(w.until.duration_since(w.since), SignedDuration::from_hours(169));
        assert_eq!(w.next().expect("next").label, "2026-W45");
        assert_eq!(w.previous().expect("previous").label, "2026-W43");
        let contains = Period::week_containing(ts("2026-11-02T04:30:00Z"), "America/New_York").expect("week");
        assert_eq!(contains.label, "2026-W44", "Sunday 23:30 local time is still week 44");
    }

    #[test]
    fn malformed_weeks_and_ranges_are_errors() {
        for bad in ["2026-47", "2026-W4", "26-W47", "2026-W54", "2026-Wxx"] {
            assert!(matches!(Period::iso_week(bad, "UTC"), Err(Error::Week { .. })), "{bad}");
        }
        assert!(matches!(Period::iso_week("2026-W47", "Nowhere/Town"), Err(Error::TimeZone { .. })));
        let t = ts("2026-11-16T00:00:00Z");
        assert!(matches!(Period::range(t, t, "UTC"), Err(Error::Period { .. })));
        let r = Period::range(t, ts("2026-11-17T00:00:00Z"), "UTC").expect("range");
        assert_eq!(r.previous().expect("previous").since, ts("2026-11-15T00:00:00Z"));
    }
}
