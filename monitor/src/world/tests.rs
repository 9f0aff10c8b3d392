//! Tests of the embedded world geometry against known facts (ISO codes, positions).

use super::*;

fn country(code: &str) -> &'static Country {
    world().unwrap().country(code).unwrap_or_else(|| panic!("{code} missing"))
}

fn contains(bbox: &BBox, lon: f32, lat: f32) -> bool {
    (bbox.min.lon..=bbox.max.lon).contains(&lon) && (bbox.min.lat..=bbox.max.lat).contains(&lat)
}

#[test]
fn embedded_data_parses_with_every_sovereign_state_of_note() {
    let w = world().unwrap();
    assert!(w.countries.len() >= 230, "{} countries", w.countries.len());
    for code in ["US", "CN", "SE", "SG", "DE", "FR", "GB", "RU", "FJ", "BR", "AU", "IN", "JP", "ZA", "VA", "MC", "HK"] {
        assert!(w.country(code).is_some(), "{code} missing");
    }
    assert_eq!(w.country("se").map(|c| c.alpha2.as_str()), Some("SE"), "lookup ignores case");
    assert!(w.countries.windows(2).all(|p| p[0].alpha2 < p[1].alpha2), "sorted by code");
    assert!(w.unassigned.iter().any(|l| l.name == "Kosovo"), "land without an ISO code is kept");
}

#[test]
fn numeric_ids_map_to_the_right_alpha2_codes() {
    for (numeric, code, name) in [
        (840, "US", "United States"),
        (156, "CN", "China"),
        (752, "SE", "Sweden"),
        (702, "SG", "Singapore"),
        (276, "DE", "Germany"),
        (643, "RU", "Russian Federation"),
        (242, "FJ", "Fiji"),
        (158, "TW", "Taiwan"),
    ] {
        let c = country(code);
        assert_eq!((c.numeric, c.name.as_str()), (numeric, name));
    }
}

#[test]
fn outlines_and_points_lie_where_the_countries_are() {
    // Known coordinates: Stockholm, Beijing, Kansas, Singapore.
    for (code, lon, lat) in [("SE", 18.07, 59.33), ("CN", 116.4, 39.9), ("US", -98.0, 38.5), ("SG", 103.82, 1.35)] {
        let c = country(code);
        assert!(contains(&c.bbox, lon, lat), "{code}: {lon},{lat} outside {:?}", c.bbox);
        assert!(contains(&c.bbox, c.point.lon, c.point.lat), "{code}: point {:?} outside its bbox", c.point);
    }
    let sg = country("SG");
    assert!(sg.fine_scale && !sg.polygons.is_empty(), "Singapore comes from the 1:50m file");
    assert!(!country("US").fine_scale);
    assert!(sg.bbox.area_deg2() < 1.0 && country("RU").bbox.area_deg2() > 1000.0);
    let va = country("VA");
    assert!((va.point.lon - 12.45).abs() < 0.1 && (va.point.lat - 41.90).abs() < 0.1, "Vatican at {:?}", va.point);
}

#[test]
fn rings_are_open_and_have_at_least_three_points() {
    for c in countries().unwrap() {
        for ring in c.rings() {
            assert!(ring.len() >= 3, "{}", c.alpha2);
            assert_ne!(ring.first(), ring.last(), "{}: ring stored closed", c.alpha2);
            assert!(ring.iter().all(|p| p.lon.abs() <= 180.0 && p.lat.abs() <= 90.0), "{}", c.alpha2);
        }
    }
}

#[test]
fn antimeridian_crossing_countries_are_kept_as_given() {
    // world-atlas does not cut rings at ±180°: Russia (Chukotka) and Fiji have rings with a step
    // from one edge to the other. Kept as given; the map projection unwraps them.
    for code in ["RU", "FJ"] {
        let c = country(code);
        let crosses = c.rings().any(|r| {
            let closed = r.iter().chain(r.first());
            closed.clone().zip(closed.skip(1)).any(|(a, b)| (a.lon - b.lon).abs() > 180.0)
        });
        assert!(crosses, "{code}: a ring crosses the antimeridian");
        assert!(c.rings().flatten().any(|p| p.lon > 179.0) && c.rings().flatten().any(|p| p.lon < -179.0));
        assert!(c.point.lon.abs() <= 180.0, "{code}: point {:?}", c.point);
    }
    assert!(country("FJ").point.lon.abs() > 177.0, "Fiji's point lies near 180°, not at {:?}", country("FJ").point);
    // At 1:110m the Aleutians reach 171.8°W without crossing.
    let us_west = country("US").rings().flatten().map(|p| p.lon).fold(f32::MAX, f32::min);
    assert!((-180.0..-170.0).contains(&us_west), "US reaches {us_west}");
}

#[test]
fn malformed_data_gives_typed_errors() {
    assert!(matches!(parse("{"), Err(Error::Parse(_))));
    let file = |format: u32, code: &str, ring: &str| {
        format!(
            r#"{{"format":{format},"source":"t","unassigned":[],"countries":[{{"alpha2":"{code}","numeric":1,
            "name":"X","scale":"110m","point":[0,0],"polygons":[[{ring}]]}}]}}"#
        )
    };
    assert!(matches!(parse(&file(2, "XX", "[0,0,1,0,1,1]")), Err(Error::Format { found: 2 })));
    assert!(matches!(parse(&file(1, "x<", "[0,0,1,0,1,1]")), Err(Error::Code { .. })));
    assert!(matches!(parse(&file(1, "XX", "[0,0,1,0,1]")), Err(Error::Ring { len: 5, .. })));
    let ok = parse(&file(1, "XX", "[0,0,100,0,100,100]")).unwrap();
    assert_eq!(ok.countries[0].bbox.max, LonLat { lon: 1.0, lat: 1.0 });
}
