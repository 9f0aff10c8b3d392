//! A time zone looked up once, by the IANA name it was given. The one typed zone handed from
//! settings resolution (`report.time_zone`) and from `--time-zone` to the journal writer (weekly
//! rollups), reports, weekly exports and claims: none of them parses a zone name again. A leaf:
//! it imports no other module of the crate (reports add `Zone::parse_time` in `report::period`).

use jiff::tz::TimeZone;

/// A time zone with the IANA name it was looked up by (rollups, reports and exports are keyed by
/// the name).
#[derive(Debug, Clone, PartialEq)]
pub struct Zone {
    /// IANA name as given ("UTC", "Europe/Berlin").
    pub name: String,
    /// The zone.
    pub tz: TimeZone,
}

/// A name that is not in the time zone database.
#[derive(Debug, thiserror::Error)]
#[error("unknown time zone `{name}` (expected an IANA name such as Europe/Berlin)")]
pub struct UnknownZone {
    /// The name looked up.
    pub name: String,
    #[source]
    source: jiff::Error,
}

impl Zone {
    /// Looks `name` up in the time zone database ("UTC" included).
    ///
    /// # Errors
    /// [`UnknownZone`] for a name the database does not have.
    pub fn get(name: &str) -> Result<Self, UnknownZone> {
        let tz = TimeZone::get(name).map_err(|source| UnknownZone { name: name.to_string(), source })?;
        Ok(Self { name: name.to_string(), tz })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_names_keep_their_spelling_and_unknown_ones_are_named_in_the_error() {
        let berlin = Zone::get("Europe/Berlin").expect("zone");
        assert_eq!((berlin.name.as_str(), berlin.tz.iana_name()), ("Europe/Berlin", Some("Europe/Berlin")));
        let err = Zone::get("Nowhere/Town").expect_err("unknown zone");
        assert_eq!(err.name, "Nowhere/Town");
        assert_eq!(err.to_string(), "unknown time zone `Nowhere/Town` (expected an IANA name such as Europe/Berlin)");
    }
}
