//! Residency truth (issue 15): is the country a database gives physically possible, given the
//! round-trip time the kernel measured?
//!
//! Light in fibre covers about 200 km per millisecond one way, so a round trip of `rtt` ms
//! reaches at most `rtt × 100` km. A destination whose database country lies entirely farther
//! than that from the device ([`DeviceLocation`], `[device] location`) cannot be there: it is
//! [`Verdict::Implausible`], typically an anycast or CDN edge near the device. Distances are
//! great-circle distances (haversine, mean Earth radius) to the nearest point of the country's
//! territory (every polygon: overseas territories count) from the embedded Natural Earth
//! outlines ([`crate::world`]).
//!
//! Owns the `[device]` section and the distance bound. Does not look addresses up (enrich) or
//! read the journal (report). Passive: nothing here sends a packet.

mod config;
mod distance;
#[cfg(test)]
mod tests;

use serde::Serialize;

pub use config::{CONFIG_DOC, DeviceConfig, DeviceLocation, LocationError};
pub use distance::{distance_km, great_circle_km};

/// Kilometres a round trip can reach per millisecond (light in fibre: ~200 km/ms one way).
pub const KM_PER_RTT_MS: f64 = 100.0;

/// What the report says of an implausible destination's likely cause.
pub const IMPLAUSIBLE_NOTE: &str = "anycast/CDN edge near the device";

/// Why plausibility cannot be judged.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The embedded world geometry is unusable (a build defect).
    #[error("world geometry is unavailable")]
    World(#[source] &'static crate::world::Error),
    /// A country code the world geometry does not know.
    #[error("no territory known for country `{code}`")]
    UnknownCountry {
        /// The code.
        code: String,
    },
    /// A device point outside −90..90 / −180..180 degrees, or not a number.
    #[error("device location {location} is not a point on Earth (lat −90..90, lon −180..180)")]
    DeviceLocation {
        /// The location as written in reports.
        location: String,
    },
}

/// Plausible or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The country is within reach of the measured round trip.
    Plausible,
    /// The country is farther than the round trip allows: the address cannot be there.
    Implausible,
}

/// The evidence for one (country, minimum RTT) pair.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Plausibility {
    /// The verdict.
    pub verdict: Verdict,
    /// Smallest RTT measured to the destination, µs.
    pub min_rtt_us: u32,
    /// Great-circle distance from the device to the nearest point of the country's territory, km
    /// (0 when the device is inside it).
    pub distance_km: f64,
    /// Farthest the round trip can reach, km (`min_rtt_ms × 100`).
    pub bound_km: f64,
}

/// Farthest a round trip of `min_rtt_us` can reach, km.
#[must_use]
pub fn bound_km(min_rtt_us: u32) -> f64 {
    f64::from(min_rtt_us) / 1000.0 * KM_PER_RTT_MS
}

/// Whether `country` (ISO alpha-2) is physically possible for a destination the kernel measured
/// at `min_rtt_us` from a device at `device`.
///
/// # Errors
/// [`Error::UnknownCountry`] for a code (of the destination or of the device) without
/// territory; [`Error::World`] when the embedded geometry is broken.
pub fn plausibility(device: &DeviceLocation, country: &str, min_rtt_us: u32) -> Result<Plausibility, Error> {
    let distance_km = distance_km(device, country)?;
    let bound_km = bound_km(min_rtt_us);
    let verdict = if distance_km > bound_km { Verdict::Implausible } else { Verdict::Plausible };
    Ok(Plausibility { verdict, min_rtt_us, distance_km, bound_km })
}
