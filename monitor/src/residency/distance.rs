//! Great-circle distances between the device and a country's territory (`geo`: haversine
//! distance and closest points on the outlines).

use std::{
    collections::HashMap,
    sync::{LazyLock, Mutex},
};

use geo::{Closest, Contains, Coord, Distance, Haversine, HaversineClosestPoint, LineString, MultiPolygon, Point};

use super::{DeviceLocation, Error};
use crate::world::{self, Country};

/// Great-circle distance between two points in degrees (`lat`, `lon`), km.
#[must_use]
pub fn great_circle_km((lat1, lon1): (f64, f64), (lat2, lon2): (f64, f64)) -> f64 {
    Haversine.distance(Point::new(lon1, lat1), Point::new(lon2, lat2)) / 1000.0
}

/// Distance from the device to the nearest point of `country`'s territory, km; 0 when the device
/// is inside it (or is that country). For a device given as a country, the distance between the
/// two territories (nearest points).
///
/// # Errors
/// As [`super::plausibility`].
pub fn distance_km(device: &DeviceLocation, country: &str) -> Result<f64, Error> {
    let to = territory(country)?;
    match device {
        // The settings refuse such a point; checked here too, so that a location built in code
        // cannot give NaN distances (every comparison false: "plausible").
        DeviceLocation::Point { .. } if device.validate().is_err() => {
            Err(Error::DeviceLocation { location: device.label() })
        }
        DeviceLocation::Point { lat, lon } => Ok(point_to(&to, Point::new(*lon, *lat))),
        DeviceLocation::Country(code) if code.eq_ignore_ascii_case(country) => Ok(0.0),
        DeviceLocation::Country(code) => {
            let key = (code.to_ascii_uppercase(), country.to_ascii_uppercase());
            if let Some(d) = PAIRS.lock().ok().and_then(|m| m.get(&key).copied()) {
                return Ok(d);
            }
            let from = territory(code)?;
            let d = territory_to(&from, &to);
            if let Ok(mut m) = PAIRS.lock() {
                m.insert(key, d);
            }
            Ok(d)
        }
    }
}

/// Territory-to-territory distances already computed (a few per report).
static PAIRS: LazyLock<Mutex<HashMap<(String, String), f64>>> = LazyLock::new(Mutex::default);

/// A country's outline as `geo` polygons, with its representative point for outline-less ones.
struct Territory {
    shape: MultiPolygon<f64>,
    point: Point<f64>,
}

fn territory(code: &str) -> Result<Territory, Error> {
    let w = world::world().map_err(Error::World)?;
    let c = w.country(code).ok_or_else(|| Error::UnknownCountry { code: code.to_owned() })?;
    Ok(Territory { shape: shape(c), point: Point::new(f64::from(c.point.lon), f64::from(c.point.lat)) })
}

fn shape(c: &Country) -> MultiPolygon<f64> {
    let ring = |r: &[world::LonLat]| -> LineString<f64> {
        let mut coords: Vec<Coord<f64>> =
            r.iter().map(|p| Coord { x: f64::from(p.lon), y: f64::from(p.lat) }).collect();
        if let Some(first) = coords.first().copied() {
            coords.push(first); // the world data keeps rings open
        }
        LineString::new(coords)
    };
    MultiPolygon::new(
        c.polygons
            .iter()
            .filter_map(|p| {
                let mut rings = p.rings.iter().map(|r| ring(r));
                Some(geo::Polygon::new(rings.next()?, rings.collect()))
            })
            .collect(),
    )
}

/// Distance from `p` to the territory, km (0 inside).
fn point_to(t: &Territory, p: Point<f64>) -> f64 {
    if t.shape.0.is_empty() {
        return Haversine.distance(p, t.point) / 1000.0;
    }
    if t.shape.contains(&p) {
        return 0.0;
    }
    match t.shape.haversine_closest_point(&p) {
        Closest::Intersection(_) => 0.0,
        Closest::SinglePoint(q) => Haversine.distance(p, q) / 1000.0,
        // Degenerate outline: fall back to the representative point.
        Closest::Indeterminate => Haversine.distance(p, t.point) / 1000.0,
    }
}

/// Nearest distance between two territories, km: from every vertex of each to the other.
fn territory_to(a: &Territory, b: &Territory) -> f64 {
    let vertices = |t: &Territory| -> Vec<Point<f64>> {
        if t.shape.0.is_empty() {
            return vec![t.point];
        }
        t.shape.0.iter().flat_map(|p| p.exterior().points().collect::<Vec<_>>()).collect()
    };
    let from_a = vertices(a).into_iter().map(|p| point_to(b, p));
    let from_b = vertices(b).into_iter().map(|p| point_to(a, p));
    from_a.chain(from_b).fold(f64::INFINITY, f64::min)
}
