//! A line chart of the statistics over simulated time: one panel per
//! quantity, each with its own vertical scale, axes, tick marks, a title and
//! the values at the ends of its axes.

use std::path::Path;

use super::font::{draw_text, text_height, text_width};
use super::image::Image;
use super::stats::StatsRow;
use crate::state::ID;

/// Image width in pixels.
const WIDTH: usize = 900;
/// Height of one panel in pixels.
const PANEL: usize = 170;
/// Margin around each panel's plotting area (the left one holds values).
const MARGIN: i64 = 24;
/// Width of the left margin.
const LEFT: i64 = 90;
/// Scale of the label font.
const TEXT: i64 = 2;
/// Tick marks per axis.
const TICKS: i64 = 5;

/// A plotted quantity and its line colour.
type Series = (fn(&StatsRow) -> f64, [u8; 3]);

/// The plotted quantities.
const SERIES: [(&str, Series); 4] = [
    ("mass", (|r| r.mass, [31, 119, 180])),
    ("energy", (|r| r.energy, [214, 39, 40])),
    ("shock radius", (|r| r.shock_radius, [44, 160, 44])),
    ("max rho", (|r| r.max[ID], [148, 103, 189])),
];

/// Plots mass, total energy, shock radius and maximum density against time,
/// in four stacked panels, to a PNG file.
pub fn plot_stats(path: &Path, rows: &[StatsRow]) -> std::io::Result<()> {
    let mut img = Image::new(WIDTH, PANEL * SERIES.len(), [255; 3]);
    let (t0, t1) = range(rows.iter().map(|r| r.time));
    let axis = [0, 0, 0];
    for (panel, (title, (value, colour))) in SERIES.iter().enumerate() {
        let top = (panel * PANEL) as i64 + MARGIN / 2;
        let (left, right) = (LEFT, WIDTH as i64 - MARGIN);
        let bottom = top + PANEL as i64 - MARGIN - 8;
        img.line((left, top), (left, bottom), axis);
        img.line((left, bottom), (right, bottom), axis);
        for k in 0..=TICKS {
            let x = left + (right - left) * k / TICKS;
            let y = bottom - (bottom - top) * k / TICKS;
            img.line((x, bottom), (x, bottom + 4), axis);
            img.line((left - 4, y), (left, y), axis);
        }
        let (v0, v1) = range(rows.iter().map(value));
        draw_text(&mut img, left + 8, top, title, TEXT, *colour);
        let label = |v: f64| format!("{v:.3e}");
        draw_text(&mut img, 2, top, &label(v1), TEXT, axis);
        draw_text(
            &mut img,
            2,
            bottom - text_height(TEXT),
            &label(v0),
            TEXT,
            axis,
        );
        draw_text(
            &mut img,
            left,
            bottom + 6,
            &format!("t={}", label(t0)),
            TEXT,
            axis,
        );
        let end = format!("t={}", label(t1));
        draw_text(
            &mut img,
            right - text_width(&end, TEXT),
            bottom + 6,
            &end,
            TEXT,
            axis,
        );
        let to_px = |r: &StatsRow| {
            let fx = scale(r.time, t0, t1);
            let fy = scale(value(r), v0, v1);
            (
                left + ((right - left) as f64 * fx).round() as i64,
                bottom - ((bottom - top) as f64 * fy).round() as i64,
            )
        };
        let mut points = rows.iter().map(to_px);
        if let Some(mut prev) = points.next() {
            img.set(prev.0, prev.1, *colour);
            for p in points {
                img.line(prev, p, *colour);
                prev = p;
            }
        }
    }
    img.write_png(path)
}

/// Relative span below which a series is drawn as flat (conserved
/// quantities vary by rounding errors only).
const FLAT: f64 = 1e-6;

/// Smallest and largest finite value (0, 1 when there are none), widened
/// to at least [`FLAT`] of the magnitude around the middle.
fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if lo > hi {
        return (0.0, 1.0);
    }
    let min_span = FLAT * lo.abs().max(hi.abs());
    if hi - lo < min_span {
        let mid = 0.5 * (lo + hi);
        (mid - min_span, mid + min_span)
    } else {
        (lo, hi)
    }
}

/// Position of `v` in `[lo, hi]` as a fraction (the middle for a flat range).
fn scale(v: f64, lo: f64, hi: f64) -> f64 {
    if hi > lo {
        ((v - lo) / (hi - lo)).clamp(0.0, 1.0)
    } else {
        0.5
    }
}
