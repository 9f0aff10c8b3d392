//! The `[device] location` setting: where the monitored device is, for the plausibility bound.

use serde::{Deserialize, Serialize};

/// The `[device]` section, documented; `config/monitor.toml` carries a copy.
pub const CONFIG_DOC: &str = r#"[device]
# Where this device is, for the physical plausibility check of database countries: a destination
# whose database country is farther from here than its measured round trip allows
# (min RTT in ms × 100 km) is reported as implausible. Either an ISO 3166-1 alpha-2 country
# code (distances are then from the nearest point of that country's territory: looser), or
# { lat = 59.33, lon = 18.07 } in degrees. Unset (the default): plausibility is off (reports
# say so once).
# location = "US"
"#;

/// `[device]`.
#[derive(Deserialize, Serialize, Debug, Clone, Default, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DeviceConfig {
    /// Where the device is; `None`: plausibility is off.
    pub location: Option<DeviceLocation>,
}

/// What is wrong with `[device] location`.
#[derive(Debug, thiserror::Error)]
pub enum LocationError {
    /// Not two upper-case letters, or no country the embedded world data knows.
    #[error("`{code}` is not an ISO 3166-1 alpha-2 code with a known territory (e.g. \"US\")")]
    UnknownCountry {
        /// The configured code.
        code: String,
    },
    /// The embedded world data cannot be read, so no code can be checked.
    #[error("cannot check country code `{code}`")]
    World {
        /// The configured code.
        code: String,
        /// Why the world data is unusable.
        #[source]
        source: &'static crate::world::Error,
    },
    /// Coordinates outside −90..90 / −180..180.
    #[error("lat {lat} / lon {lon} is outside −90..90 / −180..180")]
    OutOfRange {
        /// Latitude, degrees.
        lat: f64,
        /// Longitude, degrees.
        lon: f64,
    },
}

/// Where the device is.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
#[serde(untagged)]
pub enum DeviceLocation {
    /// Somewhere in this country (ISO 3166-1 alpha-2).
    Country(String),
    /// A point, in degrees.
    Point {
        /// Latitude, −90 to 90.
        lat: f64,
        /// Longitude, −180 to 180.
        lon: f64,
    },
}

impl DeviceLocation {
    /// Checks the code or the coordinates.
    ///
    /// # Errors
    /// [`LocationError`], naming what is wrong.
    pub fn validate(&self) -> Result<(), LocationError> {
        match self {
            Self::Country(code) => {
                let unknown = || LocationError::UnknownCountry { code: code.clone() };
                if code.len() != 2 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
                    return Err(unknown());
                }
                let world =
                    crate::world::world().map_err(|source| LocationError::World { code: code.clone(), source })?;
                world.country(code).map(drop).ok_or_else(unknown)
            }
            Self::Point { lat, lon } => {
                if (-90.0..=90.0).contains(lat) && (-180.0..=180.0).contains(lon) {
                    Ok(())
                } else {
                    Err(LocationError::OutOfRange { lat: *lat, lon: *lon })
                }
            }
        }
    }

    /// As written in reports: the code, or `lat,lon`.
    #[must_use]
    pub fn label(&self) -> String {
        match self {
            Self::Country(code) => code.clone(),
            Self::Point { lat, lon } => format!("{lat:.4},{lon:.4}"),
        }
    }
}
