//! The world map of the HTML report: Equal Earth projection of [`crate::world`], SVG path data
//! for every country (computed once), and the log-scaled colour classes of a choropleth.
//!
//! Rings that cross the antimeridian (Chukotka, Fiji) are unwrapped and drawn twice, each copy
//! clipped to −180°..180°; rings around a pole (Antarctica) are closed along the map's edge.

use std::{fmt::Write as _, sync::LazyLock};

use crate::world::{self, LonLat};

/// Width of the map's `viewBox` (its height follows from the projection). Path coordinates are
/// whole units of it (0.36° at the equator), written relative to the previous point.
pub(super) const WIDTH: f64 = 1000.0;
/// Equal Earth coefficients (Šavrič, Patterson, Jenny 2018).
const A: [f64; 4] = [1.340_264, -0.081_106, 0.000_893, 0.003_796];
/// Countries whose bounding box is smaller than this (square degrees), or that come from the
/// 1:50m data, get a marker: they are (nearly) invisible at this scale.
const SMALL_DEG2: f32 = 4.0;

/// Colour classes, light to dark (ColorBrewer "Blues", colour-blind safe).
pub(super) const PALETTE: [&str; 6] = ["#c6dbef", "#9ecae1", "#6baed6", "#4292c6", "#2171b5", "#08306b"];

/// Raw Equal Earth (x, y) in radians-ish units, y up.
fn equal_earth(lon: f64, lat: f64) -> (f64, f64) {
    let (l, p) = (lon.to_radians(), lat.to_radians());
    let theta = ((3f64).sqrt() / 2.0 * p.sin()).asin();
    let (t2, t6) = (theta * theta, theta.powi(6));
    let x = 2.0 * (3f64).sqrt() * l * theta.cos()
        / (3.0 * (9.0 * A[3] * t6 * t2 + 7.0 * A[2] * t6 + 3.0 * A[1] * t2 + A[0]));
    let y = theta * (A[3] * t6 * t2 + A[2] * t6 + A[1] * t2 + A[0]);
    (x, y)
}

fn extent() -> (f64, f64) {
    (equal_earth(180.0, 0.0).0, equal_earth(0.0, 90.0).1)
}

/// Height of the `viewBox`.
pub(super) fn height() -> f64 {
    let (xmax, ymax) = extent();
    (WIDTH * ymax / xmax).ceil()
}

/// Map coordinates (pixels of the `viewBox`, y down) of a position.
pub(super) fn project(lon: f64, lat: f64) -> (f64, f64) {
    let (xmax, ymax) = extent();
    let s = WIDTH / (2.0 * xmax);
    let (x, y) = equal_earth(lon, lat);
    (WIDTH / 2.0 + x * s, ymax * s - y * s)
}

/// The outline of the world (the map's frame): the ±180° meridians.
pub(super) fn outline() -> String {
    let mut pts: Vec<(f64, f64)> = (-18..=18).map(|lat| project(180.0, f64::from(lat * 5))).collect();
    pts.extend((-18..=18).rev().map(|lat| project(-180.0, f64::from(lat * 5))));
    path(&[pts])
}

/// Keeps the part of `ring` on one side of the meridian `lon = edge` (`keep_below`: lon ≤ edge).
fn clip(ring: &[(f64, f64)], edge: f64, keep_below: bool) -> Vec<(f64, f64)> {
    let inside = |p: &(f64, f64)| if keep_below { p.0 <= edge } else { p.0 >= edge };
    let mut out = Vec::with_capacity(ring.len() + 4);
    for (i, cur) in ring.iter().enumerate() {
        let prev = &ring[(i + ring.len() - 1) % ring.len()];
        let cross = || (edge, prev.1 + (edge - prev.0) / (cur.0 - prev.0) * (cur.1 - prev.1));
        match (inside(prev), inside(cur)) {
            (true, true) => out.push(*cur),
            (true, false) => out.push(cross()),
            (false, true) => {
                out.push(cross());
                out.push(*cur);
            }
            (false, false) => {}
        }
    }
    out
}

/// A lon/lat ring as one or more rings inside −180°..180° (see the module docs).
fn split(ring: &[LonLat]) -> Vec<Vec<(f64, f64)>> {
    let pts: Vec<(f64, f64)> = ring.iter().map(|p| (f64::from(p.lon), f64::from(p.lat))).collect();
    let n = pts.len();
    let jumps: Vec<usize> = (0..n).filter(|&i| (pts[i].0 - pts[(i + 1) % n].0).abs() > 180.0).collect();
    if jumps.is_empty() {
        return vec![pts];
    }
    if jumps.len() % 2 == 1 {
        // Around a pole: walk along the edge to the pole and back at each jump.
        let pole = if pts.iter().map(|p| p.1).sum::<f64>() < 0.0 { -90.0 } else { 90.0 };
        let mut out = Vec::with_capacity(n + 4);
        for (i, p) in pts.iter().enumerate() {
            out.push(*p);
            if jumps.contains(&i) {
                let next = pts[(i + 1) % n];
                out.push((p.0.signum() * 180.0, pole));
                out.push((next.0.signum() * 180.0, pole));
            }
        }
        return vec![out];
    }
    let mut unwrapped = Vec::with_capacity(n);
    for p in &pts {
        let x = match unwrapped.last() {
            Some(&(px, _)) if p.0 - px > 180.0 => p.0 - 360.0,
            Some(&(px, _)) if px - p.0 > 180.0 => p.0 + 360.0,
            _ => p.0,
        };
        unwrapped.push((x, p.1));
    }
    let shifted: Vec<(f64, f64)> = if unwrapped.iter().any(|p| p.0 > 180.0) {
        unwrapped.iter().map(|p| (p.0 - 360.0, p.1)).collect()
    } else {
        unwrapped.iter().map(|p| (p.0 + 360.0, p.1)).collect()
    };
    [unwrapped, shifted].iter().map(|r| clip(&clip(r, 180.0, true), -180.0, false)).filter(|r| r.len() >= 3).collect()
}

/// SVG path data of projected rings: whole units, relative moves, repeated points dropped.
fn path(rings: &[Vec<(f64, f64)>]) -> String {
    let mut d = String::new();
    let mut pen = (0_i64, 0_i64);
    for ring in rings {
        let mut count = 0;
        let mut start = pen;
        for &(x, y) in ring {
            #[expect(clippy::cast_possible_truncation, reason = "map coordinates are within 0..=WIDTH")]
            let p = (x.round() as i64, y.round() as i64);
            if count > 0 && p == pen {
                continue;
            }
            let (dx, dy) = (p.0 - pen.0, p.1 - pen.1);
            if count == 0 {
                start = p;
                let _ = write!(d, "m{dx} {dy}");
            } else {
                let _ = write!(d, "l{dx} {dy}");
            }
            pen = p;
            count += 1;
        }
        if count > 0 {
            // After `z` the pen is back at the start of the ring.
            d.push('z');
            pen = start;
        }
    }
    d
}

fn projected_path<'a>(rings: impl Iterator<Item = &'a [LonLat]>) -> String {
    let projected: Vec<Vec<(f64, f64)>> =
        rings.flat_map(split).map(|r| r.into_iter().map(|(lon, lat)| project(lon, lat)).collect()).collect();
    path(&projected)
}

/// A country as drawn.
pub(super) struct Shape {
    /// ISO alpha-2 code (also the SVG id suffix).
    pub alpha2: String,
    /// ISO short name.
    pub name: String,
    /// Path data (empty for countries without polygons).
    pub d: String,
    /// Marker position (whole `viewBox` units) when the country is too small to see.
    pub marker: Option<(i64, i64)>,
}

/// Every country and the unassigned land, projected once.
pub(super) struct Geometry {
    /// Countries, sorted by code.
    pub countries: Vec<Shape>,
    /// Path data of land without an ISO code.
    pub unassigned: String,
}

static GEOMETRY: LazyLock<Option<Geometry>> = LazyLock::new(|| {
    let w = world::world().ok()?;
    let countries = w
        .countries
        .iter()
        .map(|c| {
            let small = c.fine_scale || c.polygons.is_empty() || c.bbox.area_deg2() < SMALL_DEG2;
            Shape {
                alpha2: c.alpha2.clone(),
                name: c.name.clone(),
                d: projected_path(c.rings()),
                marker: small.then(|| {
                    let (x, y) = project(f64::from(c.point.lon), f64::from(c.point.lat));
                    #[expect(clippy::cast_possible_truncation, reason = "map coordinates are within 0..=WIDTH")]
                    (x.round() as i64, y.round() as i64)
                }),
            }
        })
        .collect();
    let unassigned = projected_path(
        w.unassigned.iter().flat_map(|l| l.polygons.iter()).flat_map(|p| p.rings.iter().map(Vec::as_slice)),
    );
    Some(Geometry { countries, unassigned })
});

/// The projected world, or `None` when the embedded geometry is malformed (then the page has no
/// maps, and says so; the tables carry every figure).
pub(super) fn geometry() -> Option<&'static Geometry> {
    GEOMETRY.as_ref()
}

/// Log-scaled classes over the positive values of one map.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Scale {
    min: u64,
    max: u64,
}

impl Scale {
    /// The scale of `values` (zeros ignored); `None` when none is positive.
    pub(super) fn of(values: impl Iterator<Item = u64>) -> Option<Self> {
        let positive: Vec<u64> = values.filter(|v| *v > 0).collect();
        Some(Self { min: *positive.iter().min()?, max: *positive.iter().max()? })
    }

    fn log_fraction(&self, v: u64) -> f64 {
        if self.max == self.min {
            return 1.0;
        }
        #[expect(clippy::cast_precision_loss, reason = "a colour class needs no 64-bit precision")]
        let (v, lo, hi) = ((v as f64).ln(), (self.min as f64).ln(), (self.max as f64).ln());
        (v - lo) / (hi - lo)
    }

    /// Class 0..[`PALETTE`]`.len()` of a positive value; the largest value is in the last class.
    pub(super) fn class(&self, v: u64) -> usize {
        let top = PALETTE.len() - 1;
        #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "0 ≤ fraction × 6 ≤ 6")]
        let c = (self.log_fraction(v.clamp(self.min, self.max)) * PALETTE.len() as f64).floor() as usize;
        c.min(top)
    }

    /// Lower bound of each class (bytes, rounded up): class `i` holds values ≥ `bounds[i]`.
    pub(super) fn bounds(&self) -> Vec<u64> {
        #[expect(clippy::cast_precision_loss, reason = "bounds are shown rounded")]
        let (lo, hi) = ((self.min as f64).ln(), (self.max as f64).ln());
        (0..PALETTE.len())
            .map(|i| {
                if i == 0 {
                    return self.min;
                }
                #[expect(clippy::cast_precision_loss, reason = "i ≤ 6")]
                let f = i as f64 / PALETTE.len() as f64;
                #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "within min..=max")]
                let b = (lo + f * (hi - lo)).exp().ceil() as u64;
                b.clamp(self.min, self.max)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::f64::consts::PI;

    use super::*;

    #[test]
    fn equal_earth_maps_known_points() {
        // Centre, and the extent: x_max = 2√3π / (3·A1) at the equator.
        let (x, y) = equal_earth(0.0, 0.0);
        assert!(x.abs() < 1e-12 && y.abs() < 1e-12);
        assert!((equal_earth(180.0, 0.0).0 - 2.0 * 3f64.sqrt() * PI / (3.0 * A[0])).abs() < 1e-9);
        let (cx, cy) = project(0.0, 0.0);
        assert!((cx - WIDTH / 2.0).abs() < 1e-9 && (cy - height() / 2.0).abs() < 1.0);
        let (_, north) = project(0.0, 60.0);
        assert!(north < cy, "north is up");
    }

    #[test]
    fn scale_classes_are_log_scaled_with_the_maximum_darkest() {
        let s = Scale::of([0, 10, 100, 1_000_000].into_iter()).unwrap();
        assert_eq!(s.class(1_000_000), PALETTE.len() - 1);
        assert_eq!(s.class(10), 0);
        assert_eq!(s.class(1000), 2, "log scale: 10^3 is 2/5 of the way from 10^1 to 10^6");
        let b = s.bounds();
        assert_eq!(b.len(), PALETTE.len());
        assert_eq!(b[0], 10);
        assert!(b.windows(2).all(|w| w[0] < w[1]));
        assert!(b.iter().enumerate().all(|(i, v)| s.class(*v) == i), "{b:?}");
        let single = Scale::of([11_000].into_iter()).unwrap();
        assert_eq!(single.bounds(), vec![11_000; PALETTE.len()]);
        assert_eq!(Scale::of([5, 5].into_iter()).unwrap().class(5), PALETTE.len() - 1);
        assert!(Scale::of([0].into_iter()).is_none());
    }

    #[test]
    fn antimeridian_rings_are_split_into_two_clipped_copies() {
        let fiji =
            [(179.0, -16.0), (-179.0, -16.0), (-179.0, -17.0), (179.0, -17.0)].map(|(lon, lat)| LonLat { lon, lat });
        let parts = split(&fiji);
        assert_eq!(parts.len(), 2);
        for part in &parts {
            assert!(part.iter().all(|p| (-180.0..=180.0).contains(&p.0)), "{part:?}");
        }
        assert!(parts.iter().any(|p| p.iter().all(|q| q.0 >= 179.0)));
        assert!(parts.iter().any(|p| p.iter().all(|q| q.0 <= -179.0)));
        // A ring around the south pole is closed along the edge.
        let pole = [(-180.0, -80.0), (0.0, -70.0), (180.0, -80.0)].map(|(lon, lat)| LonLat { lon, lat });
        let closed = split(&pole);
        assert_eq!(closed.len(), 1);
        assert!(closed[0].iter().any(|p| p.1 == -90.0));
    }

    #[test]
    fn every_country_has_a_path_or_a_marker() {
        let g = geometry().unwrap();
        assert!(g.countries.len() > 200);
        for c in &g.countries {
            assert!(!c.d.is_empty() || c.marker.is_some(), "{}", c.alpha2);
            assert!(!c.d.contains("NaN"), "{}", c.alpha2);
        }
        let sg = g.countries.iter().find(|c| c.alpha2 == "SG").unwrap();
        assert!(sg.marker.is_some(), "Singapore gets a marker");
        let us = g.countries.iter().find(|c| c.alpha2 == "US").unwrap();
        assert!(us.marker.is_none());
        let total: usize = g.countries.iter().map(|c| c.d.len()).sum();
        assert!(total < 120_000, "world path data is {total} bytes");
    }
}
