//! ISO 8601 weeks cut in a time zone: Monday 00:00 local time to the next Monday 00:00. The one
//! definition of week bounds, shared by reports (`report::Period`) and the journal's weekly
//! rollups, so both always agree. A leaf: it imports no other module of the crate.

use jiff::{
    Span, Timestamp,
    civil::{Date, ISOWeekDate, Weekday},
    tz::TimeZone,
};

/// The Monday of the ISO week that contains `t` in `tz`.
///
/// # Errors
/// At the ends of the range jiff represents.
pub fn monday_of(t: Timestamp, tz: &TimeZone) -> Result<Date, jiff::Error> {
    let iso = t.to_zoned(tz.clone()).date().iso_week_date();
    Ok(ISOWeekDate::new(iso.year(), iso.week(), Weekday::Monday)?.date())
}

/// `[since, until)` of the week that starts on `monday`: local midnight of that Monday and of the
/// next one (a week with a DST change lasts 167 or 169 hours).
///
/// # Errors
/// At the ends of the range jiff represents.
pub fn bounds(monday: Date, tz: &TimeZone) -> Result<(Timestamp, Timestamp), jiff::Error> {
    let next = monday.checked_add(Span::new().days(7))?;
    Ok((monday.to_zoned(tz.clone())?.timestamp(), next.to_zoned(tz.clone())?.timestamp()))
}

/// The ISO label of the week that starts on `monday`, e.g. "2026-W47".
#[must_use]
pub fn label(monday: Date) -> String {
    let iso = monday.iso_week_date();
    format!("{:04}-W{:02}", iso.year(), iso.week())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_week_of_an_instant_has_local_midnight_bounds() {
        let ny = TimeZone::get("America/New_York").expect("zone");
        // Sunday 2026-11-01 23:30 local time (after DST ended) is still in 2026-W44.
        let t: Timestamp = "2026-11-02T04:30:00Z".parse().expect("timestamp");
        let monday = monday_of(t, &ny).expect("monday");
        assert_eq!(label(monday), "2026-W44");
        let (since, until) = bounds(monday, &ny).expect("bounds");
        assert_eq!(
            (since.to_string(), until.to_string()),
            ("2026-10-26T04:00:00Z".into(), "2026-11-02T05:00:00Z".into())
        );
    }
}
