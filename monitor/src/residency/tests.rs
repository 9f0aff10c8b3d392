//! The distance bound: known city pairs (WGS84 geodesic reference values, Vincenty), territory
//! edge cases (antimeridian, overseas territories), the verdict.

use super::*;

const LONDON: (f64, f64) = (51.5074, -0.1278);
const NEW_YORK: (f64, f64) = (40.7128, -74.0060);
const SYDNEY: (f64, f64) = (-33.8688, 151.2093);
const LOS_ANGELES: (f64, f64) = (34.0522, -118.2437);
const PARIS: (f64, f64) = (48.8566, 2.3522);
const TOKYO: (f64, f64) = (35.6762, 139.6503);
const SINGAPORE: (f64, f64) = (1.3521, 103.8198);
const STOCKHOLM: (f64, f64) = (59.3293, 18.0686);

fn point((lat, lon): (f64, f64)) -> DeviceLocation {
    DeviceLocation::Point { lat, lon }
}

fn within(got: f64, want: f64, pct: f64) -> bool {
    (got - want).abs() <= want * pct / 100.0
}

#[test]
fn known_city_pairs_are_within_one_percent() {
    // Reference: WGS84 ellipsoid geodesic (Vincenty's inverse formula).
    for (a, b, want) in [
        (LONDON, NEW_YORK, 5585.2),
        (SYDNEY, LOS_ANGELES, 12_063.1),
        (PARIS, TOKYO, 9735.3),
        (SINGAPORE, STOCKHOLM, 9636.1),
    ] {
        let got = great_circle_km(a, b);
        assert!(within(got, want, 1.0), "{a:?} → {b:?}: {got} km, want {want} km ± 1 %");
        assert!(within(great_circle_km(b, a), got, 0.001), "symmetric");
    }
}

#[test]
fn a_device_inside_a_country_is_at_distance_zero() {
    assert_eq!(distance_km(&point(PARIS), "FR").expect("FR"), 0.0);
    assert_eq!(distance_km(&point(STOCKHOLM), "SE").expect("SE"), 0.0);
    assert_eq!(distance_km(&DeviceLocation::Country("US".into()), "US").expect("US"), 0.0);
}

#[test]
fn distance_to_a_country_is_to_its_nearest_point() {
    // Stockholm to Singapore (a small island state): close to the city distance.
    let d = distance_km(&point(STOCKHOLM), "SG").expect("SG");
    assert!(within(d, 9636.1, 3.0), "{d}");
    // London to France: across the Channel (~150–300 km), far less than to Paris (344 km).
    let d = distance_km(&point(LONDON), "FR").expect("FR");
    assert!((100.0..320.0).contains(&d), "{d}");
}

#[test]
fn overseas_territories_count_french_guiana_is_france() {
    // Cayenne is in French Guiana, part of the FR feature.
    assert_eq!(distance_km(&point((4.9372, -52.3260)), "FR").expect("FR"), 0.0);
    // Paramaribo (Suriname) is ~ 130–330 km from French Guiana, 7,000 km from Paris.
    let d = distance_km(&point((5.8520, -55.2038)), "FR").expect("FR");
    assert!(d < 400.0, "nearest French territory from Paramaribo: {d} km");
    // Honolulu is in the United States.
    assert_eq!(distance_km(&point((21.3069, -157.8583)), "US").expect("US"), 0.0);
}

#[test]
fn territories_spanning_the_antimeridian_are_near_from_both_sides() {
    // Fiji straddles 180°: points just east and just west of it are both close.
    for lon in [179.5, -179.5] {
        let d = distance_km(&point((-16.8, lon)), "FJ").expect("FJ");
        assert!(d < 300.0, "Fiji from lon {lon}: {d} km");
    }
    // Russia reaches east of 180° (Chukotka): near from both sides of the line. (At 1:110m the
    // United States have no Aleutians west of 180°.)
    for (lat, lon) in [(66.0, -172.0), (66.0, 178.0)] {
        let d = distance_km(&point((lat, lon)), "RU").expect("RU");
        assert!(d < 300.0, "Russia from {lat}, {lon}: {d} km");
    }
    // Across the line, distances are short: Fiji's east to Tonga's west is < 1,000 km, not ~40,000.
    let d = distance_km(&point((-16.8, -179.9)), "FJ").expect("FJ");
    assert!(d < 150.0, "{d}");
}

#[test]
fn device_given_as_a_country_uses_the_nearest_territories() {
    let us = DeviceLocation::Country("US".into());
    // Canada borders the United States.
    assert!(distance_km(&us, "CA").expect("CA") < 50.0);
    // Singapore and Sweden are thousands of km from any US territory in the data.
    let sg = distance_km(&us, "SG").expect("SG");
    let se = distance_km(&us, "SE").expect("SE");
    assert!(sg > 3000.0 && se > 2000.0, "SG {sg} km, SE {se} km");
}

#[test]
fn verdict_follows_the_bound() {
    let us = DeviceLocation::Country("US".into());
    // 300 µs over a veth pair: at most 30 km.
    let p = plausibility(&us, "SG", 300).expect("SG");
    assert_eq!(p.verdict, Verdict::Implausible);
    assert!((p.bound_km - 30.0).abs() < 1e-9);
    assert_eq!(plausibility(&us, "US", 300).expect("US").verdict, Verdict::Plausible);
    // 250 ms reaches 25,000 km: anywhere on Earth.
    let p = plausibility(&us, "SG", 250_000).expect("SG");
    assert_eq!(p.verdict, Verdict::Plausible);
    assert!(p.distance_km < p.bound_km);
    // The bound is exactly min_rtt_ms × 100 km.
    assert!((bound_km(80_000) - 8000.0).abs() < 1e-9);
    let err = plausibility(&us, "XX", 1000).expect_err("unknown code");
    assert!(err.to_string().contains("`XX`"), "{err}");
}

#[test]
fn device_location_is_validated() {
    assert!(DeviceLocation::Country("US".into()).validate().is_ok());
    assert!(DeviceLocation::Country("us".into()).validate().is_err());
    assert!(DeviceLocation::Country("XX".into()).validate().is_err());
    assert!(point((91.0, 0.0)).validate().is_err());
    assert!(point((59.3, 18.1)).validate().is_ok());
    #[derive(serde::Deserialize)]
    struct File {
        device: DeviceConfig,
    }
    let f: File = toml::from_str("[device]\nlocation = \"SE\"\n").expect("code");
    assert_eq!(f.device.location, Some(DeviceLocation::Country("SE".into())));
    let f: File = toml::from_str("[device]\nlocation = { lat = 59.33, lon = 18.07 }\n").expect("point");
    assert_eq!(f.device.location, Some(DeviceLocation::Point { lat: 59.33, lon: 18.07 }));
    let f: File = toml::from_str(CONFIG_DOC).expect("documented section parses");
    assert_eq!(f.device, DeviceConfig::default());
    assert!(toml::from_str::<File>("[device]\nplace = \"SE\"\n").is_err(), "unknown key");
}

#[test]
fn a_device_point_off_the_earth_is_an_error_not_a_verdict() {
    // NaN compares false with every bound: before the check it read "plausible" everywhere.
    for (lat, lon) in [(f64::NAN, 0.0), (0.0, f64::NAN), (91.0, 0.0), (0.0, -180.5)] {
        let err = plausibility(&point((lat, lon)), "US", 1_000).unwrap_err();
        assert!(matches!(err, Error::DeviceLocation { .. }), "{lat},{lon}: {err}");
    }
    assert_eq!(plausibility(&point(LONDON), "US", 1_000).unwrap().verdict, Verdict::Implausible);
}
