//! Report periods: ISO 8601 weeks cut in a time zone, or explicit instants.

use jiff::{
    SignedDuration, Timestamp, Zoned,
    civil::{Date, DateTime, ISOWeekDate, Weekday},
    fmt::temporal::{Pieces, PiecesOffset, TimeZoneAnnotationKind},
    tz::{AmbiguousOffset, Offset, TimeZone},
};
use serde::{Deserialize, Serialize};

use super::Error;
use crate::{journal::TimeRange, zone::Zone};

/// Times given on the command line (`--since`, `--until`), read in a report's zone.
impl Zone {
    /// A civil date-time (or date: midnight) in this zone as an instant, or an instant written
    /// with an offset or `Z`. Accepted: `2026-11-16`, `2026-11-16T08:00`, `2026-11-16T08:00:30`,
    /// `2026-11-16T08:00Z`, `2026-11-16T08:00:00+01:00`, `2026-11-16T08:00[Europe/Berlin]` (a
    /// time in that zone; an offset given too must be the zone's) (a space may replace the `T`);
    /// offsets run from -12:00 to +14:00. A local
    /// time that a daylight-saving change skips is moved forward; one it repeats takes the
    /// earlier instant.
    ///
    /// # Errors
    /// [`Error::Time`] for anything else.
    pub fn parse_time(&self, text: &str) -> Result<Timestamp, Error> {
        let bad = |reason: String| Error::Time { text: text.to_string(), reason };
        // jiff reads a leap second (`12:00:60`, `120060`) as the second before it; a bound a
        // second off what was asked for is refused instead.
        if let Some(time) = text.find(['T', 't', ' ']).and_then(|i| text.get(i + 1..)) {
            let digits: String =
                time.chars().take_while(|c| c.is_ascii_digit() || *c == ':').filter(char::is_ascii_digit).collect();
            if digits.get(4..6) == Some("60") {
                return Err(bad("a leap second is not a bound of its own".into()));
            }
        }
        // jiff's parsers take a `[zone]` annotation and offsets up to ±25:59; a time given with
        // one is read in that zone (an offset given as well must agree), offsets beyond the
        // world's (-12:00 to +14:00) are refused.
        let beyond = || bad("its offset is beyond the world's, -12:00 to +14:00".into());
        if let Ok(pieces) = Pieces::parse(text) {
            let real = |o: Offset| (-12 * 3600..=14 * 3600).contains(&o.seconds());
            if let Some(PiecesOffset::Numeric(o)) = pieces.offset()
                && !real(o.offset())
            {
                return Err(beyond());
            }
            if let Some(annotation) = pieces.time_zone_annotation() {
                if let TimeZoneAnnotationKind::Offset(o) = annotation.kind()
                    && !real(*o)
                {
                    return Err(beyond());
                }
                let zoned = text.parse::<Zoned>().map_err(|e| bad(e.to_string()))?;
                // A local time of the annotated zone that a daylight-saving change skips or
                // repeats, without an offset to tell: said as for the report's zone.
                if pieces.offset().is_none() {
                    let civil = pieces.date().to_datetime(pieces.time().unwrap_or_default());
                    let tz = zoned.time_zone().clone();
                    let kind = tz.to_ambiguous_timestamp(civil).offset();
                    let zone = Zone { name: tz.iana_name().unwrap_or("its zone").to_owned(), tz };
                    if let Some(note) = zone.ambiguity_note(text, kind, zoned.timestamp()) {
                        log::warn!("{note}");
                    }
                }
                return Ok(zoned.timestamp());
            }
        }
        if let Ok(ts) = text.parse::<Timestamp>() {
            return Ok(ts);
        }
        // `DateTime` accepts a bare date (midnight); parsing a `Date` would accept a date-time
        // and silently drop its time of day.
        let civil = text.parse::<DateTime>().map_err(|e| bad(e.to_string()))?;
        let ambiguous = self.tz.to_ambiguous_timestamp(civil);
        let kind = ambiguous.offset();
        let ts = ambiguous.compatible().map_err(|e| bad(e.to_string()))?;
        if let Some(note) = self.ambiguity_note(text, kind, ts) {
            log::warn!("{note}");
        }
        Ok(ts)
    }

    /// What a user is told when a local time they gave is skipped or repeated by a
    /// daylight-saving change in this zone (`None` when it is not): which instant was taken.
    fn ambiguity_note(&self, text: &str, kind: AmbiguousOffset, taken: Timestamp) -> Option<String> {
        let shown = taken.to_zoned(self.tz.clone()).strftime("%Y-%m-%dT%H:%M:%S%:z").to_string();
        let zone = &self.name;
        match kind {
            AmbiguousOffset::Unambiguous { .. } => None,
            AmbiguousOffset::Gap { .. } => {
                Some(format!("{text} does not exist in {zone} (a daylight-saving change skips it); read as {shown}"))
            }
            AmbiguousOffset::Fold { .. } => Some(format!(
                "{text} comes twice in {zone} (a daylight-saving change repeats it); read as the earlier, {shown}; \
                 give an offset to choose the later"
            )),
        }
    }
}

/// How a period was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
    /// The zone of the period.
    #[must_use]
    pub fn zone(&self) -> Zone {
        Zone { name: self.time_zone_name.clone(), tz: self.time_zone.clone() }
    }
}

impl Period {
    /// The ISO week `week` ("2026-W47") in `zone`.
    ///
    /// # Errors
    /// [`Error::Week`] for a malformed or nonexistent week.
    pub fn iso_week(week: &str, zone: &Zone) -> Result<Self, Error> {
        let bad = |reason: &str| Error::Week { week: week.to_string(), reason: reason.to_string() };
        let (year, w) = week.split_once("-W").ok_or_else(|| bad("no `-W`"))?;
        // Digits only: `parse` would take a sign (`2026-W+1`, `+202-W47`) as a number.
        let digits = |t: &str, n: usize| t.len() == n && t.bytes().all(|b| b.is_ascii_digit());
        if !digits(year, 4) || !digits(w, 2) {
            return Err(bad("expected YYYY-Www"));
        }
        let year: i16 = year.parse().map_err(|_| bad("year is not a number"))?;
        let w: i8 = w.parse().map_err(|_| bad("week is not a number"))?;
        let monday = ISOWeekDate::new(year, w, Weekday::Monday)
            .map_err(|e| {
                // Week 53 exists only in long years: say that, not jiff's "not in 1..=53".
                let long = ISOWeekDate::new(year, 53, Weekday::Monday).is_ok();
                if w == 53 && !long { bad(&format!("{year} has 52 ISO weeks")) } else { bad(&e.to_string()) }
            })?
            .date();
        Self::week_from_monday(monday, zone)
    }

    /// The ISO week containing `t` in `zone`.
    ///
    /// # Errors
    /// [`Error::Period`] at the ends of the representable range.
    pub fn week_containing(t: Timestamp, zone: &Zone) -> Result<Self, Error> {
        let monday = crate::week::monday_of(t, &zone.tz).map_err(Error::Period)?;
        Self::week_from_monday(monday, zone)
    }

    /// Explicit instants; shown in `zone`.
    ///
    /// # Errors
    /// [`Error::EmptyPeriod`] when `until` is not after `since`.
    pub fn range(since: Timestamp, until: Timestamp, zone: &Zone) -> Result<Self, Error> {
        if until <= since {
            return Err(Error::EmptyPeriod { since, until });
        }
        Ok(Self {
            label: format!("{since}/{until}"),
            kind: PeriodKind::Range,
            since,
            until,
            time_zone: zone.tz.clone(),
            time_zone_name: zone.name.clone(),
        })
    }

    fn week_from_monday(monday: Date, zone: &Zone) -> Result<Self, Error> {
        let (since, until) = crate::week::bounds(monday, &zone.tz).map_err(Error::Period)?;
        Ok(Self {
            label: crate::week::label(monday),
            kind: PeriodKind::IsoWeek,
            since,
            until,
            time_zone: zone.tz.clone(),
            time_zone_name: zone.name.clone(),
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
                let prev = self.since.checked_sub(SignedDuration::from_hours(24)).map_err(Error::Period)?;
                Self::week_containing(prev, &self.zone())
            }
            PeriodKind::Range => {
                let len = self.until.duration_since(self.since);
                let since = self.since.checked_sub(len).map_err(Error::Period)?;
                Self::range(since, self.since, &self.zone())
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
                let next = self.until.checked_add(SignedDuration::from_hours(24)).map_err(Error::Period)?;
                Self::week_containing(next, &self.zone())
            }
            PeriodKind::Range => {
                let len = self.until.duration_since(self.since);
                let until = self.until.checked_add(len).map_err(Error::Period)?;
                Self::range(self.until, until, &self.zone())
            }
        }
    }

    /// True when the period's bounds are those of one ISO week in its zone: a week, or a range
    /// written as one (`--since 2026-11-09 --until 2026-11-16`), which the weekly rollups can
    /// answer as well.
    ///
    /// # Errors
    /// [`Error::Period`] at the ends of the representable range.
    pub fn is_iso_week(&self) -> Result<bool, Error> {
        if self.kind == PeriodKind::IsoWeek {
            return Ok(true);
        }
        let week = Self::week_containing(self.since, &self.zone())?;
        Ok(week.since == self.since && week.until == self.until)
    }

    /// `[since, until)` for journal queries.
    #[must_use]
    pub fn time_range(&self) -> TimeRange {
        TimeRange { since: self.since, until: self.until }
    }

    /// `t` as local time in the period's zone, RFC 3339 with offset (e.g. 2026-11-16T00:00:00-05:00),
    /// with its fraction of a second when it has one (a session's bounds).
    #[must_use]
    pub fn local(&self, t: Timestamp) -> String {
        t.to_zoned(self.time_zone.clone()).strftime("%Y-%m-%dT%H:%M:%S%.f%:z").to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn z(name: &str) -> Zone {
        Zone::get(name).expect("zone")
    }

    #[test]
    fn iso_week_boundaries_follow_the_time_zone() {
        let w = Period::iso_week("2026-W47", &z("America/New_York")).expect("week");
        assert_eq!((w.since, w.until), (ts("2026-11-16T05:00:00Z"), ts("2026-11-23T05:00:00Z")));
        assert_eq!(w.local(w.since), "2026-11-16T00:00:00-05:00");
        let utc = Period::iso_week("2026-W47", &z("UTC")).expect("week");
        assert_eq!((utc.since, utc.until), (ts("2026-11-16T00:00:00Z"), ts("2026-11-23T00:00:00Z")));
        // Week 1 of 2027 starts on Monday 2027-01-04; 2026-W53 exists (2026 ends on a Thursday).
        let w1 = Period::iso_week("2027-W01", &z("UTC")).expect("week");
        assert_eq!(w1.since, ts("2027-01-04T00:00:00Z"));
        assert_eq!(Period::iso_week("2026-W53", &z("UTC")).expect("week").until, w1.since);
    }

    #[test]
    fn ranges_on_a_weeks_bounds_are_that_week() {
        let ny = z("America/New_York");
        let week = Period::iso_week("2026-W45", &ny).unwrap();
        assert!(week.is_iso_week().unwrap());
        let same = Period::range(week.since, week.until, &ny).unwrap();
        assert!(same.is_iso_week().unwrap(), "a range on the week's bounds");
        // The week of the change back to standard time lasts 169 hours: its previous range of
        // equal length starts an hour before the previous week.
        let dst = Period::range(ts("2026-10-26T04:00:00Z"), ts("2026-11-02T05:00:00Z"), &ny).unwrap();
        assert!(dst.is_iso_week().unwrap(), "2026-W44 in New York");
        assert!(!dst.previous().unwrap().is_iso_week().unwrap());
        for (since, until) in [
            (week.since, week.until.checked_sub(SignedDuration::from_secs(1)).unwrap()),
            (week.since.checked_add(SignedDuration::from_secs(1)).unwrap(), week.until),
            (week.since, week.next().unwrap().until),
        ] {
            assert!(!Period::range(since, until, &ny).unwrap().is_iso_week().unwrap(), "{since}/{until}");
        }
        // The same instants are no ISO week in another zone.
        assert!(!Period::range(week.since, week.until, &z("UTC")).unwrap().is_iso_week().unwrap());
    }

    #[test]
    fn a_week_with_a_dst_change_lasts_169_hours() {
        // US daylight saving time ends on Sunday 2026-11-01 02:00 local time.
        let w = Period::iso_week("2026-W44", &z("America/New_York")).expect("week");
        assert_eq!((w.since, w.until), (ts("2026-10-26T04:00:00Z"), ts("2026-11-02T05:00:00Z")));
        assert_eq!(w.until.duration_since(w.since), SignedDuration::from_hours(169));
        assert_eq!(w.next().expect("next").label, "2026-W45");
        assert_eq!(w.previous().expect("previous").label, "2026-W43");
        let contains = Period::week_containing(ts("2026-11-02T04:30:00Z"), &z("America/New_York")).expect("week");
        assert_eq!(contains.label, "2026-W44", "Sunday 23:30 local time is still week 44");
    }

    #[test]
    fn malformed_weeks_and_ranges_are_errors() {
        for bad in
            ["2026-47", "2026-W4", "26-W47", "2026-W54", "2026-Wxx", "2025-W53", "2026-W+1", "+202-W47", "2026-W-1"]
        {
            assert!(matches!(Period::iso_week(bad, &z("UTC")), Err(Error::Week { .. })), "{bad}");
        }
        let short = Period::iso_week("2025-W53", &z("UTC")).expect_err("2025 has 52 weeks").to_string();
        assert!(short.contains("2025 has 52 ISO weeks"), "{short}");
        assert!(Period::iso_week("2026-W53", &z("UTC")).is_ok(), "2026 has 53 weeks");
        let t = ts("2026-11-16T00:00:00Z");
        assert!(matches!(Period::range(t, t, &z("UTC")), Err(Error::EmptyPeriod { .. })));
        let r = Period::range(t, ts("2026-11-17T00:00:00Z"), &z("UTC")).expect("range");
        assert_eq!(r.previous().expect("previous").since, ts("2026-11-15T00:00:00Z"));
    }

    #[test]
    fn times_of_day_are_kept_in_the_zone_or_at_their_offset() {
        let berlin = z("Europe/Berlin");
        for (text, expected) in [
            ("2026-11-19", "2026-11-18T23:00:00Z"),
            ("2026-11-19T12:00", "2026-11-19T11:00:00Z"),
            ("2026-11-19 12:00", "2026-11-19T11:00:00Z"),
            ("2026-11-19T12:00:30", "2026-11-19T11:00:30Z"),
            ("2026-11-19T12:00:59", "2026-11-19T11:00:59Z"),
            ("2026-11-19T120030", "2026-11-19T11:00:30Z"),
            ("2026-11-19T12:06:00", "2026-11-19T11:06:00Z"),
            ("2026-11-19T12:00Z", "2026-11-19T12:00:00Z"),
            ("2026-11-19T12:00:00Z", "2026-11-19T12:00:00Z"),
            ("2026-11-19T12:00-05:00", "2026-11-19T17:00:00Z"),
            // Berlin skips 02:00-03:00 on 2026-03-29: moved forward.
            ("2026-03-29T02:30", "2026-03-29T01:30:00Z"),
        ] {
            assert_eq!(berlin.parse_time(text).expect(text), ts(expected), "{text}");
        }
        for bad in [
            "2026-11-19T25:00",
            "yesterday",
            "2026-11",
            "12:00",
            "",
            // Offsets no place has, and an offset the annotated zone does not have then.
            "2026-11-19T12:00+25:00",
            "2026-11-19T12:00-13:00",
            "2026-11-19T12:00+05:00[Europe/Berlin]",
            "2026-11-19T12:00[+20:00]",
            "2026-11-19T12:00[Nowhere/Town]",
            // A leap second: jiff would read 12:00:59.
            "2026-11-19T12:00:60",
            "2026-11-19 12:00:60Z",
            "2026-11-19T12:00:60.5+01:00",
            "2026-11-19T120060",
            "20261119T120060Z",
        ] {
            assert!(matches!(berlin.parse_time(bad), Err(Error::Time { .. })), "{bad}");
        }
        // The error says why (it only gave examples: found by an adversarial pass).
        for (bad, why) in [
            ("2026-02-29", "'day' for `2026-02` is invalid"),
            ("2026-11-19T12:00+05:00[Europe/Berlin]", "unambiguously has offset `+01`"),
            ("2026-11-19T12:00:60", "a leap second"),
            ("2026-11-19T12:00+25:00", "beyond the world's"),
        ] {
            let message = berlin.parse_time(bad).expect_err(bad).to_string();
            assert!(message.contains(why) && message.contains("expected e.g."), "{bad}: {message}");
        }
        // A zone annotation is honoured, whatever the report's zone.
        let utc = z("UTC");
        for (text, expected) in [
            ("2026-12-01T12:00[Europe/Berlin]", "2026-12-01T11:00:00Z"),
            ("2026-12-01T12:00+01:00[Europe/Berlin]", "2026-12-01T11:00:00Z"),
            ("2026-12-01T12:00+14:00", "2026-11-30T22:00:00Z"),
            ("2026-12-01T12:00[+01:00]", "2026-12-01T11:00:00Z"),
        ] {
            assert_eq!(utc.parse_time(text).expect(text), ts(expected), "{text}");
        }
        // A skipped or repeated local time is said, with the instant taken (it was silent: found
        // by an adversarial pass).
        let note = |text: &str| {
            let civil: DateTime = text.parse().expect(text);
            let amb = berlin.tz.to_ambiguous_timestamp(civil);
            let kind = amb.offset();
            berlin.ambiguity_note(text, kind, berlin.parse_time(text).expect(text))
        };
        let gap = note("2026-03-29T02:30").expect("a skipped time is said");
        assert!(gap.contains("does not exist in Europe/Berlin") && gap.contains("2026-03-29T03:30:00+02:00"), "{gap}");
        let fold = note("2026-10-25T02:30").expect("a repeated time is said");
        assert!(fold.contains("comes twice") && fold.contains("2026-10-25T02:30:00+02:00"), "{fold}");
        assert_eq!(berlin.parse_time("2026-10-25T02:30").expect("fold"), ts("2026-10-25T00:30:00Z"));
        assert_eq!(note("2026-11-19T12:00"), None);
        // The same with the zone in brackets, whatever the report's zone (it was silent: found
        // by an adversarial pass): the instant is the same, and the note is logged.
        assert_eq!(z("UTC").parse_time("2026-03-29T02:30[Europe/Berlin]").expect("gap"), ts("2026-03-29T01:30:00Z"));
        let (since, until) =
            (berlin.parse_time("2026-11-19T12:00").unwrap(), berlin.parse_time("2026-11-19T13:00").unwrap());
        let hour = Period::range(since, until, &berlin).expect("a one-hour range is a range");
        // Local times keep a fraction of a second (a session's bounds), and only then.
        assert_eq!(hour.local(since), "2026-11-19T12:00:00+01:00");
        assert_eq!(hour.local(ts("2026-11-19T11:00:00.25Z")), "2026-11-19T12:00:00.25+01:00");
        assert_eq!(hour.until.duration_since(hour.since), SignedDuration::from_hours(1));
    }
}
