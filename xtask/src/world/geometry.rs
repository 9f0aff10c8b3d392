//! Geometry of `cargo xtask world`: quantising rings to centidegrees, and a representative point
//! inside a feature (antimeridian-aware).

/// Degrees → centidegrees (the data file's unit).
#[expect(clippy::cast_possible_truncation, reason = "|degrees| ≤ 180, so centidegrees fit an i32")]
fn centi(v: f64) -> i32 {
    (v * 100.0).round() as i32
}

pub(super) fn json_point((lon, lat): (f64, f64)) -> String {
    format!("[{},{}]", centi(lon), centi(lat))
}

/// Polygons as `[[[lon,lat,lon,lat,…],…],…]` in centidegrees: open rings, consecutive
/// duplicates removed, rings with fewer than three distinct points dropped (and polygons whose
/// exterior is dropped).
pub(super) fn json_polygons(polygons: &[Vec<Vec<(f64, f64)>>]) -> String {
    let mut out = String::from("[");
    let mut first_polygon = true;
    for polygon in polygons {
        let rings: Vec<Vec<(i32, i32)>> = polygon.iter().map(|r| quantise(r)).collect();
        if rings.first().is_none_or(|r| r.len() < 3) {
            continue;
        }
        out.push_str(if first_polygon { "[" } else { ",[" });
        first_polygon = false;
        let mut first_ring = true;
        for ring in rings.iter().filter(|r| r.len() >= 3) {
            out.push_str(if first_ring { "[" } else { ",[" });
            first_ring = false;
            let coords: Vec<String> = ring.iter().map(|(x, y)| format!("{x},{y}")).collect();
            out.push_str(&coords.join(","));
            out.push(']');
        }
        out.push(']');
    }
    out.push(']');
    out
}

fn quantise(ring: &[(f64, f64)]) -> Vec<(i32, i32)> {
    let mut q: Vec<(i32, i32)> = Vec::with_capacity(ring.len());
    for &(x, y) in ring {
        let p = (centi(x), centi(y));
        if q.last() != Some(&p) {
            q.push(p);
        }
    }
    while q.len() > 1 && q.first() == q.last() {
        q.pop();
    }
    q
}

/// Signed area of a ring (shoelace; positive counter-clockwise).
fn area(ring: &[(f64, f64)]) -> f64 {
    let n = ring.len();
    (0..n)
        .map(|i| {
            let (a, b) = (ring[i], ring[(i + 1) % n]);
            a.0 * b.1 - b.0 * a.1
        })
        .sum::<f64>()
        / 2.0
}

/// A point inside the largest polygon: the exterior ring's centroid when it lies inside the
/// polygon, else the middle of the widest inside span of the horizontal line through it.
/// Rings that cross the antimeridian (Fiji, Chukotka) are unwrapped first (longitudes made
/// continuous), and the point is wrapped back into −180..180.
pub(super) fn representative_point(polygons: &[Vec<Vec<(f64, f64)>>]) -> Option<(f64, f64)> {
    let unwrapped: Vec<Vec<Vec<(f64, f64)>>> = polygons.iter().map(|p| p.iter().map(|r| unwrap(r)).collect()).collect();
    let (lon, lat) = interior_point(&unwrapped)?;
    Some((
        if lon > 180.0 {
            lon - 360.0
        } else if lon < -180.0 {
            lon + 360.0
        } else {
            lon
        },
        lat,
    ))
}

/// The ring with longitudes made continuous (no step over 180°), unless it encloses a pole
/// (Antarctica): then it is returned as given.
fn unwrap(ring: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::with_capacity(ring.len());
    for &(x, y) in ring {
        let x = match out.last() {
            Some(&(px, _)) if x - px > 180.0 => x - 360.0,
            Some(&(px, _)) if px - x > 180.0 => x + 360.0,
            _ => x,
        };
        out.push((x, y));
    }
    let closes = match (out.first(), out.last()) {
        (Some(a), Some(b)) => (a.0 - b.0).abs() <= 180.0,
        _ => true,
    };
    if closes { out } else { ring.to_vec() }
}

fn interior_point(polygons: &[Vec<Vec<(f64, f64)>>]) -> Option<(f64, f64)> {
    let largest = polygons
        .iter()
        .filter(|p| p.first().is_some_and(|r| r.len() >= 3))
        .max_by(|a, b| area(&a[0]).abs().total_cmp(&area(&b[0]).abs()))?;
    let exterior = &largest[0];
    let a = area(exterior);
    let centroid = if a.abs() < 1e-12 {
        let n = exterior.len() as f64;
        (exterior.iter().map(|p| p.0).sum::<f64>() / n, exterior.iter().map(|p| p.1).sum::<f64>() / n)
    } else {
        let n = exterior.len();
        let (mut cx, mut cy) = (0.0, 0.0);
        for i in 0..n {
            let (p, q) = (exterior[i], exterior[(i + 1) % n]);
            let cross = p.0 * q.1 - q.0 * p.1;
            cx += (p.0 + q.0) * cross;
            cy += (p.1 + q.1) * cross;
        }
        (cx / (6.0 * a), cy / (6.0 * a))
    };
    if a.abs() < 1e-12 || inside(largest, centroid) {
        return Some(centroid);
    }
    // Crossings of the line y = centroid.1 with every ring; inside spans alternate (even-odd).
    let y = centroid.1;
    let mut xs: Vec<f64> = Vec::new();
    for ring in largest {
        let n = ring.len();
        for i in 0..n {
            let (p, q) = (ring[i], ring[(i + 1) % n]);
            if (p.1 > y) != (q.1 > y) {
                xs.push(p.0 + (y - p.1) / (q.1 - p.1) * (q.0 - p.0));
            }
        }
    }
    xs.sort_by(f64::total_cmp);
    xs.chunks_exact(2)
        .max_by(|a, b| (a[1] - a[0]).total_cmp(&(b[1] - b[0])))
        .map(|s| ((s[0] + s[1]) / 2.0, y))
        .or(Some(centroid))
}

/// Even-odd point-in-polygon test over all rings of a polygon.
fn inside(polygon: &[Vec<(f64, f64)>], (x, y): (f64, f64)) -> bool {
    let mut odd = false;
    for ring in polygon {
        let n = ring.len();
        for i in 0..n {
            let (p, q) = (ring[i], ring[(i + 1) % n]);
            if (p.1 > y) != (q.1 > y) && x < p.0 + (y - p.1) / (q.1 - p.1) * (q.0 - p.0) {
                odd = !odd;
            }
        }
    }
    odd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn representative_point_of_a_c_shape_lies_inside() {
        // A "C": the centroid of its exterior lies in the gap.
        let c = vec![vec![
            (0.0, 0.0),
            (10.0, 0.0),
            (10.0, 2.0),
            (2.0, 2.0),
            (2.0, 8.0),
            (10.0, 8.0),
            (10.0, 10.0),
            (0.0, 10.0),
        ]];
        let p = representative_point(std::slice::from_ref(&c)).unwrap();
        assert!(inside(&c, p), "{p:?}");
    }

    #[test]
    fn representative_point_of_a_ring_across_the_antimeridian_is_near_it() {
        let fiji = vec![vec![(179.0, -16.0), (180.0, -16.0), (-179.0, -16.0), (-179.0, -17.0), (179.0, -17.0)]];
        let (lon, lat) = representative_point(&[fiji]).unwrap();
        assert!(lon.abs() > 179.0 && (-17.0..=-16.0).contains(&lat), "{lon},{lat}");
    }

    #[test]
    fn quantise_drops_duplicates_and_the_closing_point() {
        let q = quantise(&[(0.001, 0.0), (0.002, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 0.0)]);
        assert_eq!(q, vec![(0, 0), (100, 0), (100, 100)]);
    }
}
