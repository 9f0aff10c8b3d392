//! Geometry of the HTML report's bar charts (HTML boxes, widths in percent: a fraction of the
//! size of SVG for the same bars) and timelines (SVG). Up and down are stacked: up dark and
//! solid, down light and hatched, so colour is not the only cue; every bar's title (`title`
//! attribute, SVG `<title>` in the timeline) and the table beside each chart carry the exact bytes.

use serde::Serialize;

use super::short_bytes;
use crate::report::{TimeBucket, TimelineUnit, fmt::grouped};

/// Size of a timeline's `viewBox`.
const TIMELINE_WIDTH: f64 = 640.0;
const TIMELINE_HEIGHT: f64 = 160.0;
/// Room for the date labels under the columns.
const AXIS: f64 = 20.0;

/// One row of a bar chart.
#[derive(Debug, Serialize)]
pub(super) struct Bar {
    /// Label left of the bar, cut to 32 characters (the title has it whole; escaped by the
    /// template).
    pub label: String,
    /// Exact figures, for the title.
    pub title: String,
    /// Short value right of the bar.
    pub value: String,
    /// Width of the up segment, percent of the bar area.
    pub up: String,
    /// Width of the down segment, percent of the bar area.
    pub down: String,
}

/// A horizontal bar chart.
#[derive(Debug, Serialize)]
pub(super) struct Bars {
    /// Rows, largest first.
    pub rows: Vec<Bar>,
}

/// Bars of `(label, up, down)` lines, scaled to the largest up + down.
pub(super) fn bars(lines: &[(String, u64, u64)]) -> Bars {
    let max = lines.iter().map(|(_, u, d)| u + d).max().unwrap_or(0).max(1);
    let scale = 100.0 / f64_of(max);
    let rows = lines
        .iter()
        .map(|(label, up, down)| Bar {
            title: format!("{label}: {} B up, {} B down", grouped(*up), grouped(*down)),
            label: if label.chars().count() > 32 {
                format!("{}…", label.chars().take(31).collect::<String>())
            } else {
                label.clone()
            },
            value: short_bytes(up + down),
            up: num(f64_of(*up) * scale),
            down: num(f64_of(*down) * scale),
        })
        .collect();
    Bars { rows }
}

/// One column of a timeline.
#[derive(Debug, Serialize)]
pub(super) struct Column {
    /// Left edge.
    pub x: String,
    /// Width.
    pub w: String,
    /// Top of the up segment (it reaches the axis).
    pub y_up: String,
    /// Height of the up segment.
    pub h_up: String,
    /// Top of the down segment (it sits on the up segment).
    pub y_down: String,
    /// Height of the down segment.
    pub h_down: String,
    /// Exact figures, for the `<title>`.
    pub title: String,
    /// Axis label, when this column gets one.
    pub tick: Option<String>,
}

/// A column chart of an app's timeline.
#[derive(Debug, Serialize)]
pub(super) struct Timeline {
    /// Columns in time order.
    pub columns: Vec<Column>,
    /// `viewBox` size.
    pub width: f64,
    /// Height.
    pub height: f64,
    /// The axis line's y.
    pub axis: f64,
    /// Baseline of the axis labels.
    pub tick_y: f64,
    /// Largest column, for the scale note.
    pub max: String,
}

/// The timeline chart of `buckets`.
pub(super) fn timeline(buckets: &[TimeBucket], unit: TimelineUnit) -> Timeline {
    let max = buckets.iter().map(|b| b.payload_tx + b.payload_rx).max().unwrap_or(0);
    let plot = TIMELINE_HEIGHT - AXIS;
    let scale = plot / f64_of(max.max(1));
    let w = TIMELINE_WIDTH / f64_of(buckets.len().max(1) as u64);
    // Days: every label; hours: every sixth (00, 06, 12, 18).
    let every = match unit {
        TimelineUnit::Day => (buckets.len() / 14).max(1),
        TimelineUnit::Hour => 6,
    };
    let columns = buckets
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let (h_up, h_down) = (round(f64_of(b.payload_tx) * scale), round(f64_of(b.payload_rx) * scale));
            let tick = match unit {
                TimelineUnit::Day => b.label.get(5..).map(str::to_string),
                TimelineUnit::Hour => b.label.get(11..13).map(|h| format!("{h}h")),
            };
            Column {
                x: num(f64_of(i as u64) * w),
                w: num((w - 1.0).max(0.5)),
                y_up: num(plot - h_up),
                h_up: num(h_up),
                y_down: num(plot - h_up - h_down),
                h_down: num(h_down),
                title: format!("{}: {} B up, {} B down", b.label, grouped(b.payload_tx), grouped(b.payload_rx)),
                tick: if i % every == 0 { tick } else { None },
            }
        })
        .collect();
    Timeline {
        columns,
        width: TIMELINE_WIDTH,
        height: TIMELINE_HEIGHT,
        axis: plot,
        tick_y: TIMELINE_HEIGHT - 5.0,
        max: short_bytes(max),
    }
}

#[expect(clippy::cast_precision_loss, reason = "chart geometry needs no 64-bit precision")]
fn f64_of(v: u64) -> f64 {
    v as f64
}

/// `12.0` → "12", `12.25` → "12.3".
fn num(v: f64) -> String {
    let r = round(v);
    if r.fract() == 0.0 { format!("{r:.0}") } else { format!("{r:.1}") }
}

fn round(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}
