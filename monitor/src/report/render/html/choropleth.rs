//! The choropleth of the HTML report: each app's countries in colour classes (one scale per
//! view: up + down, up, down), legends, and the shared world outlines the maps reference.

use serde::Serialize;

use super::{
    map::{self, Scale},
    short_bytes, t,
};
use crate::report::{AppReport, Share, ShareKind, fmt::grouped};

#[derive(Serialize)]
pub(super) struct Region {
    id: String,
    /// Colour classes: `t<i>` (up + down, the default view), `u<i>`, `d<i>` (`n`: no bytes).
    class: String,
    title: String,
    has_path: bool,
    marker: Option<(i64, i64)>,
}

#[derive(Serialize)]
pub(super) struct LegendItem {
    /// Colour class.
    class: usize,
    /// Lower bound of the class ("≥ 2.4 kB").
    text: String,
}

#[derive(Serialize)]
pub(super) struct Legend {
    /// `t`, `u` or `d` (the view it belongs to).
    mode: &'static str,
    label: &'static str,
    items: Vec<LegendItem>,
}

#[derive(Serialize)]
pub(super) struct MapView {
    regions: Vec<Region>,
    legends: Vec<Legend>,
    /// Countries with bytes that the map cannot show (codes it does not know).
    off_map: Vec<String>,
}

fn legend(mode: &'static str, label: &'static str, scale: Option<Scale>) -> Legend {
    let items = scale.map_or_else(Vec::new, |s| {
        let b = s.bounds();
        // Classes no value can fall in (equal bounds, e.g. a single country) are left out.
        b.iter()
            .enumerate()
            .filter(|(i, lo)| b.get(i + 1).is_none_or(|next| *lo < next))
            .map(|(class, lo)| LegendItem { class, text: format!("≥ {}", short_bytes(*lo)) })
            .collect()
    });
    Legend { mode, label, items }
}

fn class_of(scale: Option<Scale>, v: u64, prefix: char) -> String {
    match scale {
        Some(s) if v > 0 => format!("{prefix}{}", s.class(v)),
        _ => format!("{prefix}n"),
    }
}

pub(super) fn map_view(app: &AppReport) -> Option<MapView> {
    let geometry = map::geometry()?;
    let countries: Vec<&Share> = app.by_country.iter().filter(|s| s.kind == ShareKind::Country).collect();
    let total = Scale::of(countries.iter().map(|s| s.traffic.payload()));
    let up = Scale::of(countries.iter().map(|s| s.traffic.payload_tx));
    let down = Scale::of(countries.iter().map(|s| s.traffic.payload_rx));
    let mut regions = Vec::new();
    let mut off_map = Vec::new();
    for s in &countries {
        let Some(shape) = geometry.countries.iter().find(|c| c.alpha2 == s.key) else {
            off_map.push(format!("{} ({} B)", t(&s.key), grouped(s.traffic.payload())));
            continue;
        };
        regions.push(Region {
            id: shape.alpha2.clone(),
            class: format!(
                "{} {} {}",
                class_of(total, s.traffic.payload(), 't'),
                class_of(up, s.traffic.payload_tx, 'u'),
                class_of(down, s.traffic.payload_rx, 'd')
            ),
            // Up and down are in the table below the map.
            title: format!("{}: {} B", shape.name, grouped(s.traffic.payload())),
            has_path: !shape.d.is_empty(),
            marker: shape.marker,
        });
    }
    let legends = vec![legend("t", "up + down", total), legend("u", "up", up), legend("d", "down", down)];
    Some(MapView { regions, legends, off_map })
}

#[derive(Serialize)]
pub(super) struct CountryPath {
    id: String,
    d: String,
}

#[derive(Serialize)]
pub(super) struct WorldView {
    width: f64,
    height: f64,
    /// Path of the map's frame (drawn once, used by every map).
    outline: String,
    countries: Vec<CountryPath>,
    unassigned: String,
}

pub(super) fn world_view() -> Option<WorldView> {
    let g = map::geometry()?;
    Some(WorldView {
        width: map::WIDTH,
        height: map::height(),
        outline: map::outline(),
        countries: g
            .countries
            .iter()
            .filter(|c| !c.d.is_empty())
            .map(|c| CountryPath { id: c.alpha2.clone(), d: c.d.clone() })
            .collect(),
        unassigned: g.unassigned.clone(),
    })
}
