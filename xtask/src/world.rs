//! `cargo xtask world`: converts the world-atlas TopoJSON (Natural Earth, public domain; ISC
//! packaging) into the compact country geometry committed as `monitor/data/world/countries.json`.
//!
//! - Geometry of `countries-110m.json`; the countries and territories that only the 1:50m file
//!   has (Singapore, Malta, Hong Kong, most island states) are taken from `countries-50m.json`.
//! - ISO 3166-1 numeric ids are mapped to alpha-2 codes and names with Debian's `iso-codes`
//!   (`/usr/share/iso-codes/json/iso_3166-1.json`), never by hand. Features without an ISO
//!   numeric id (Kosovo, N. Cyprus, Somaliland, …) are kept apart as `unassigned` land.
//! - Coordinates are quantised to 0.01° (integers, centidegrees); rings are stored open (the
//!   closing point is implied) and rings that collapse under quantisation are dropped; every
//!   feature keeps a representative point computed from the unquantised geometry, so the
//!   smallest countries (Vatican, Monaco) still have a place on the map.
//! - Antimeridian-crossing features (Russia, Fiji, the Aleutians) are kept as world-atlas gives
//!   them: already cut at ±180°.
//!
//! The output is deterministic: running it twice gives the same bytes (`--check` verifies the
//! committed file).

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};
use geojson::{Feature, Value};
use serde::Deserialize;

use crate::{
    exec::workspace_root,
    geo::fetch::{self, Package},
};

/// world-atlas, pinned (Natural Earth 4.1.0 vectors, converted by Mike Bostock).
const WORLD_ATLAS: Package = Package {
    spec: "world-atlas@2.0.2",
    tarball: "world-atlas-2.0.2.tgz",
    sha256: "032e7765f2ce00edaeafec23ff22bc3b77e42987c257da944cc585b452c05b97",
};

/// ISO 3166-1 table of Debian's `iso-codes` (`cargo xtask setup` installs the package).
const ISO_3166_1: &str = "/usr/share/iso-codes/json/iso_3166-1.json";

/// Output directory, relative to the workspace root.
const OUT_DIR: &str = "monitor/data/world";

/// Format version of `countries.json` (bumped when the layout changes; the monitor checks it).
const FORMAT: u32 = 1;

/// `cargo xtask world` options.
#[derive(clap::Args)]
pub struct Args {
    /// Compare with the committed files instead of writing them. Example: `--check`
    #[arg(long)]
    check: bool,
    /// Output directory. Example: `--out /tmp/world`
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Runs `cargo xtask world`.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let out = args.out.clone().unwrap_or_else(|| workspace_root().join(OUT_DIR));
    let work =
        tempfile::Builder::new().prefix("monitor-world-").tempdir().context("cannot create a temporary directory")?;
    let w = work.path();
    eprintln!("xtask world: fetching {} with npm pack", WORLD_ATLAS.spec);
    let tgz = fetch::npm_pack(&WORLD_ATLAS, w)?;
    fetch::extract(
        &tgz,
        &[
            ("package/countries-110m.json", w.join("110m.json")),
            ("package/countries-50m.json", w.join("50m.json")),
            ("package/LICENSE", w.join("LICENSE")),
        ],
    )?;
    let iso = read_iso(Path::new(ISO_3166_1))?;
    let coarse = features(&w.join("110m.json"))?;
    let fine = features(&w.join("50m.json"))?;
    let data = convert(&coarse, &fine, &iso)?;
    let licence = fs::read_to_string(w.join("LICENSE")).context("reading the world-atlas licence")?;
    let files = [("countries.json", data), ("LICENSE", licence_text(&licence)), ("PROVENANCE.md", provenance())];
    for (name, text) in &files {
        let path = out.join(name);
        if args.check {
            let committed = fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
            if committed != *text {
                bail!("{} differs from what `cargo xtask world` generates", path.display());
            }
        } else {
            fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
            fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        }
    }
    let size = files[0].1.len();
    eprintln!("xtask world: {} {} ({size} bytes)", if args.check { "checked" } else { "wrote" }, out.display());
    Ok(())
}

#[derive(Deserialize)]
struct IsoFile {
    #[serde(rename = "3166-1")]
    entries: Vec<IsoEntry>,
}

#[derive(Deserialize)]
struct IsoEntry {
    alpha_2: String,
    numeric: String,
    name: String,
    common_name: Option<String>,
}

/// ISO numeric code → (alpha-2, display name: the common name where ISO gives one).
fn read_iso(path: &Path) -> anyhow::Result<HashMap<u16, (String, String)>> {
    let text = fs::read_to_string(path).with_context(|| {
        format!("cannot read {} (Debian package iso-codes: `apt-get install iso-codes`)", path.display())
    })?;
    let file: IsoFile = serde_json::from_str(&text).with_context(|| format!("cannot parse {}", path.display()))?;
    let mut map = HashMap::new();
    for e in file.entries {
        let n: u16 =
            e.numeric.parse().with_context(|| format!("{}: bad numeric code {:?}", path.display(), e.numeric))?;
        map.insert(n, (e.alpha_2, e.common_name.unwrap_or(e.name)));
    }
    Ok(map)
}

/// The `countries` object of a world-atlas TopoJSON file, as GeoJSON features.
fn features(path: &Path) -> anyhow::Result<Vec<Feature>> {
    let text = fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let topo: topojson::TopoJson = text.parse().with_context(|| format!("cannot parse {}", path.display()))?;
    let topojson::TopoJson::Topology(topology) = topo else {
        bail!("{} is not a TopoJSON topology", path.display());
    };
    let collection = topojson::to_geojson(&topology, "countries")
        .with_context(|| format!("{}: cannot convert object `countries` to GeoJSON", path.display()))?;
    Ok(collection.features)
}

/// A feature reduced to what the data file holds.
struct Region {
    numeric: Option<u16>,
    /// world-atlas's own name (used only for features without an ISO code).
    name: String,
    /// Polygons, each a list of rings (first the exterior), each ring a list of (lon, lat).
    polygons: Vec<Vec<Vec<(f64, f64)>>>,
}

fn region(feature: &Feature) -> anyhow::Result<Region> {
    let name = feature.property("name").and_then(serde_json::Value::as_str).unwrap_or_default().to_owned();
    let numeric = match &feature.id {
        None => None,
        Some(geojson::feature::Id::String(s)) => {
            Some(s.parse().with_context(|| format!("feature {name:?}: id {s:?} is not an ISO numeric code"))?)
        }
        Some(geojson::feature::Id::Number(n)) => {
            Some(n.as_u64().and_then(|n| u16::try_from(n).ok()).with_context(|| format!("feature {name:?}: id {n}"))?)
        }
    };
    let ring = |r: &Vec<Vec<f64>>| -> Vec<(f64, f64)> { r.iter().map(|p| (p[0], p[1])).collect() };
    let polygon = |p: &Vec<Vec<Vec<f64>>>| p.iter().map(ring).collect::<Vec<_>>();
    let polygons = match feature.geometry.as_ref().map(|g| &g.value) {
        Some(Value::Polygon(p)) => vec![polygon(p)],
        Some(Value::MultiPolygon(ps)) => ps.iter().map(polygon).collect(),
        None => Vec::new(),
        Some(_) => bail!("feature {name:?}: geometry is neither a Polygon nor a MultiPolygon"),
    };
    Ok(Region { numeric, name, polygons })
}

/// Builds `countries.json` from the 1:110m features plus the 1:50m features the former lacks.
fn convert(coarse: &[Feature], fine: &[Feature], iso: &HashMap<u16, (String, String)>) -> anyhow::Result<String> {
    let coarse: Vec<Region> = coarse.iter().map(region).collect::<anyhow::Result<_>>()?;
    let fine: Vec<Region> = fine.iter().map(region).collect::<anyhow::Result<_>>()?;
    let key = |r: &Region| r.numeric.map_or_else(|| format!("name:{}", r.name), |n| n.to_string());
    let have: std::collections::HashSet<String> = coarse.iter().map(key).collect();
    let mut countries: BTreeMap<String, String> = BTreeMap::new();
    let mut unassigned: BTreeMap<String, String> = BTreeMap::new();
    for (r, scale) in
        coarse.iter().map(|r| (r, "110m")).chain(fine.iter().filter(|r| !have.contains(&key(r))).map(|r| (r, "50m")))
    {
        let Some(point) = representative_point(&r.polygons) else {
            bail!("feature {:?} has no geometry", r.name);
        };
        let body = format!(
            "\"scale\":\"{scale}\",\"point\":{},\"polygons\":{}",
            json_point(point),
            json_polygons(&r.polygons)
        );
        match r.numeric {
            Some(n) => {
                let (alpha2, name) =
                    iso.get(&n).with_context(|| format!("ISO 3166-1 numeric {n:03} ({}) not in iso-codes", r.name))?;
                let entry = format!(
                    "{{\"alpha2\":{},\"numeric\":{n},\"name\":{},{body}}}",
                    serde_json::to_string(alpha2)?,
                    serde_json::to_string(name)?
                );
                if countries.insert(alpha2.clone(), entry).is_some() {
                    bail!("two features map to {alpha2}");
                }
            }
            None => {
                unassigned.insert(r.name.clone(), format!("{{\"name\":{},{body}}}", serde_json::to_string(&r.name)?));
            }
        }
    }
    let mut out = format!(
        "{{\"format\":{FORMAT},\"source\":{},\n\"countries\":[\n",
        serde_json::to_string(&format!("{} countries-110m.json + countries-50m.json; iso-codes", WORLD_ATLAS.spec))?
    );
    out.push_str(&countries.into_values().collect::<Vec<_>>().join(",\n"));
    out.push_str("\n],\n\"unassigned\":[\n");
    out.push_str(&unassigned.into_values().collect::<Vec<_>>().join(",\n"));
    out.push_str("\n]}\n");
    Ok(out)
}

/// Degrees → centidegrees (the data file's unit).
#[expect(clippy::cast_possible_truncation, reason = "|degrees| ≤ 180, so centidegrees fit an i32")]
fn centi(v: f64) -> i32 {
    (v * 100.0).round() as i32
}

fn json_point((lon, lat): (f64, f64)) -> String {
    format!("[{},{}]", centi(lon), centi(lat))
}

/// Polygons as `[[[lon,lat,lon,lat,…],…],…]` in centidegrees: open rings, consecutive
/// duplicates removed, rings with fewer than three distinct points dropped (and polygons whose
/// exterior is dropped).
fn json_polygons(polygons: &[Vec<Vec<(f64, f64)>>]) -> String {
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
fn representative_point(polygons: &[Vec<Vec<(f64, f64)>>]) -> Option<(f64, f64)> {
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

fn licence_text(world_atlas: &str) -> String {
    let mut s = String::from(
        "countries.json is derived from the npm package world-atlas 2.0.2 (ISC licence, below),\n\
         which packages Natural Earth vector data (public domain, https://www.naturalearthdata.com/about/terms-of-use/).\n\
         Country codes and names: Debian's iso-codes (LGPL-2.1-or-later data tables; facts, not code).\n\n\
         ---- world-atlas LICENSE ----\n",
    );
    let _ = write!(s, "{world_atlas}");
    s
}

fn provenance() -> String {
    format!(
        "# countries.json: provenance\n\n\
         Generated by `cargo xtask world` (xtask/src/world.rs); do not edit by hand. Regenerate with\n\
         `cargo xtask world`, verify with `cargo xtask world --check`.\n\n\
         - Source: npm `{}` (tarball sha256 `{}`), files `countries-110m.json` (all countries it has)\n  \
         and `countries-50m.json` (only the countries and territories the 1:110m file lacks, e.g.\n  \
         Singapore, Malta, Hong Kong). Natural Earth 1:110m/1:50m admin-0 countries, public domain.\n\
         - ISO 3166-1 numeric → alpha-2 codes and names: `{ISO_3166_1}` (Debian package `iso-codes`;\n  \
         the common name where ISO gives one). Features without an ISO numeric id are listed under\n  \
         `unassigned` with world-atlas's name.\n\
         - Layout (format {FORMAT}): `countries[]` sorted by alpha-2, each `{{alpha2, numeric, name, scale,\n  \
         point, polygons}}`; `point` is a representative point inside the largest polygon (from the\n  \
         unquantised geometry); `polygons` are lists of rings (exterior first), each ring a flat list\n  \
         `lon,lat,lon,lat,…` in centidegrees (0.01°), open (closing point implied). Rings that collapse\n  \
         under quantisation are dropped, so the smallest countries have a point and no polygon.\n\
         - Antimeridian: rings are as world-atlas cut them at ±180° (Russia, Fiji, the Aleutians).\n",
        WORLD_ATLAS.spec, WORLD_ATLAS.sha256
    )
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
