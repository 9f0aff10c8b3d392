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
//! - Antimeridian-crossing features (Russia, Fiji) are kept as world-atlas gives them: not cut
//!   at ±180°, a ring steps from one edge to the other (consumers unwrap them).
//!
//! The output is deterministic: running it twice gives the same bytes (`--check` verifies the
//! committed file).

mod geometry;

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};
use geojson::{Feature, Value};
use serde::Deserialize;

use self::geometry::{json_point, json_polygons, representative_point};
use crate::{
    exec::{output, workspace_root},
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
    let iso_version = output(Command::new("dpkg-query").args(["-W", "-f=${Version}", "iso-codes"]))
        .unwrap_or_else(|| "unknown".into());
    let files =
        [("countries.json", data), ("LICENSE", licence_text(&licence)), ("PROVENANCE.md", provenance(&iso_version))];
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

fn licence_text(world_atlas: &str) -> String {
    let mut s = String::from(
        "countries.json is derived from the npm package world-atlas 2.0.2 (ISC licence, below),\n\
         which packages Natural Earth vector data (public domain, https://www.naturalearthdata.com/about/terms-of-use/).\n\
         Country codes and names: Debian package iso-codes (LGPL-2.1-or-later), iso_3166-1.json.\n\n\
         ---- world-atlas LICENSE ----\n",
    );
    let _ = write!(s, "{world_atlas}");
    s
}

fn provenance(iso_version: &str) -> String {
    let spec = WORLD_ATLAS.spec;
    let sha = WORLD_ATLAS.sha256;
    [
        "# countries.json: provenance".to_string(),
        String::new(),
        "Generated by `cargo xtask world` (xtask/src/world.rs); do not edit by hand. Regenerate with".into(),
        "`cargo xtask world`, verify with `cargo xtask world --check`.".into(),
        String::new(),
        format!("- Source: npm `{spec}` (tarball sha256 `{sha}`), files"),
        "  `countries-110m.json` (all countries it has) and `countries-50m.json` (only the countries and".into(),
        "  territories the 1:110m file lacks, e.g. Singapore, Malta, Hong Kong). Natural Earth 1:110m and".into(),
        "  1:50m admin-0 countries, public domain.".into(),
        format!("- ISO 3166-1 numeric → alpha-2 codes and names: `{ISO_3166_1}` (Debian package"),
        format!("  `iso-codes` {iso_version}; the common name where ISO gives one). Features without an ISO"),
        "  numeric id are listed under `unassigned` with world-atlas's name.".into(),
        format!("- Layout (format {FORMAT}): `countries[]` sorted by alpha-2, each `{{alpha2, numeric, name, scale,"),
        "  point, polygons}`; `point` is a representative point inside the largest polygon (from the".into(),
        "  unquantised geometry); `polygons` are lists of rings (exterior first), each ring a flat list".into(),
        "  `lon,lat,lon,lat,…` in centidegrees (0.01°), open (closing point implied). Rings that collapse".into(),
        "  under quantisation are dropped, so the smallest countries have a point and no polygon.".into(),
        "- Antimeridian: rings are kept as world-atlas gives them, not cut at ±180°: rings of Russia".into(),
        "  (Chukotka), Fiji and Antarctica step from one edge to the other (the HTML map unwraps them).".into(),
        String::new(),
    ]
    .join("\n")
}
