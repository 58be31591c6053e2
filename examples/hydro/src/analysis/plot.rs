//! The statistics over simulated time as one figure of four panels, each
//! with its own axes, labels and legend: the relative drift of the mass,
//! the relative drift of the total energy, the blast's shock radius against
//! Sedov's, and the density's extrema.

use std::ops::Range;
use std::path::Path;

use plotters::prelude::*;

use super::canvas::{plot_error, text, Canvas};
use super::stats::StatsRow;
use crate::sedov::Reference;
use crate::state::ID;

/// Size of the figure in pixels.
pub const STATS_SIZE: (u32, u32) = (1000, 1100);

/// Colours of the series.
const BLUE: RGBColor = RGBColor(31, 119, 180);
const RED: RGBColor = RGBColor(214, 39, 40);
const GREEN: RGBColor = RGBColor(44, 160, 44);
const GREY: RGBColor = RGBColor(90, 90, 90);

/// One line of a panel.
struct Series<'a> {
    label: &'a str,
    colour: RGBColor,
    points: Vec<(f64, f64)>,
}

/// `(v - v0) / |v0|` of each row's `value`, against time (0 when `v0` is 0).
fn drift(rows: &[StatsRow], value: fn(&StatsRow) -> f64) -> Vec<(f64, f64)> {
    let v0 = rows.first().map_or(0.0, value);
    let scale = if v0 == 0.0 { 1.0 } else { v0.abs() };
    rows.iter()
        .map(|r| (r.time, (value(r) - v0) / scale))
        .collect()
}

/// The range of the finite `values`, padded by 5%, at least `min_span` wide
/// (conserved quantities vary by rounding errors only).
fn span(values: impl Iterator<Item = f64>, min_span: f64) -> Range<f64> {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if lo > hi {
        return 0.0..1.0;
    }
    let pad = (0.05 * (hi - lo)).max(0.5 * min_span);
    (lo - pad)..(hi + pad)
}

/// The labels of a panel.
struct Axes<'a> {
    caption: &'a str,
    y_desc: &'a str,
    y_format: fn(&f64) -> String,
    legend: SeriesLabelPosition,
}

/// Draws one panel with linear axes.
fn panel(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    axes: &Axes<'_>,
    series: &[Series<'_>],
    time: Range<f64>,
    min_span: f64,
) -> std::io::Result<()> {
    let values = series.iter().flat_map(|s| s.points.iter().map(|p| p.1));
    let mut chart = ChartBuilder::on(area)
        .caption(axes.caption, text(20))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(90)
        .build_cartesian_2d(time, span(values, min_span))
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("simulated time t")
        .y_desc(axes.y_desc)
        .y_label_formatter(&axes.y_format)
        .label_style(text(14))
        .axis_desc_style(text(15))
        .draw()
        .map_err(plot_error)?;
    for s in series {
        let colour = s.colour;
        chart
            .draw_series(LineSeries::new(
                s.points.iter().copied(),
                colour.stroke_width(2),
            ))
            .map_err(plot_error)?
            .label(s.label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], colour.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(axes.legend.clone())
        .label_font(text(14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)
}

/// Scientific notation for small drifts (0 for a tick that is zero but
/// for the rounding of the tick positions).
fn sci(v: &f64) -> String {
    if v.abs() < 1e-25 {
        "0".into()
    } else {
        format!("{v:.1e}")
    }
}

/// Plain notation for radii and areas.
fn plain(v: &f64) -> String {
    format!("{v:.3}")
}

/// The value of a decimal logarithm.
fn power_of_ten(v: &f64) -> String {
    format!("{:.1e}", 10f64.powf(*v))
}

/// Plots `rows` to a PNG file at `path`, the shock radius against Sedov's
/// `reference` where the run has one (else the swept area).
pub fn plot_stats(
    path: &Path,
    rows: &[StatsRow],
    reference: Option<&Reference>,
) -> std::io::Result<()> {
    let mut canvas = Canvas::new(STATS_SIZE.0, STATS_SIZE.1);
    draw_stats(&canvas.area()?, rows, reference)?;
    canvas.write_png(path)
}

/// Draws the four panels of [`plot_stats`] on `root`.
fn draw_stats(
    root: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    rows: &[StatsRow],
    reference: Option<&Reference>,
) -> std::io::Result<()> {
    let t_end = rows.last().map_or(1.0, |r| r.time);
    let time = 0.0..if t_end > 0.0 { t_end } else { 1.0 };
    let panels = root.split_evenly((4, 1));
    panel(
        &panels[0],
        &Axes {
            caption: "mass: relative drift (M(t) - M(0)) / M(0)",
            y_desc: "relative mass drift",
            y_format: sci,
            legend: SeriesLabelPosition::UpperLeft,
        },
        &[Series {
            label: "mass",
            colour: BLUE,
            points: drift(rows, |r| r.mass),
        }],
        time.clone(),
        1e-15,
    )?;
    panel(
        &panels[1],
        &Axes {
            caption: "total energy: relative drift (E(t) - E(0)) / E(0)",
            y_desc: "relative energy drift",
            y_format: sci,
            legend: SeriesLabelPosition::UpperRight,
        },
        &[Series {
            label: "total energy",
            colour: RED,
            points: drift(rows, |r| r.energy),
        }],
        time.clone(),
        1e-15,
    )?;
    match reference {
        Some(sedov) => {
            // Up to the time Sedov's front reaches the nearest wall: past
            // it the front is no free blast any more.
            let free: Vec<&StatsRow> = rows
                .iter()
                .filter(|r| r.time <= sedov.wall_time())
                .collect();
            let measured = free
                .iter()
                .map(|r| (r.time, sedov.radius_of_area(r.blast_area)))
                .collect();
            let exact = free
                .iter()
                .map(|r| (r.time, sedov.radius(r.time)))
                .collect();
            let wall = vec![
                (time.start, sedov.wall_distance),
                (time.end, sedov.wall_distance),
            ];
            let sedov_label = format!("Sedov, xi0 = {:.4}", sedov.xi0);
            let wall_label = format!(
                "nearest wall (Sedov's front there at t = {:.3})",
                sedov.wall_time()
            );
            panel(
                &panels[2],
                &Axes {
                    caption: "shock radius, measured and Sedov's, until the front reaches a wall",
                    y_desc: "shock radius",
                    y_format: plain,
                    legend: SeriesLabelPosition::LowerRight,
                },
                &[
                    Series {
                        label: "measured (radius of the swept area)",
                        colour: GREEN,
                        points: measured,
                    },
                    Series {
                        label: &sedov_label,
                        colour: BLACK,
                        points: exact,
                    },
                    Series {
                        label: &wall_label,
                        colour: GREY,
                        points: wall,
                    },
                ],
                time.clone(),
                1e-3,
            )?;
        }
        None => panel(
            &panels[2],
            &Axes {
                caption: "area swept by the blast (no Sedov reference for this test case)",
                y_desc: "swept area",
                y_format: plain,
                legend: SeriesLabelPosition::LowerRight,
            },
            &[Series {
                label: "swept area",
                colour: GREEN,
                points: rows.iter().map(|r| (r.time, r.blast_area)).collect(),
            }],
            time.clone(),
            1e-3,
        )?,
    }
    panel(
        &panels[3],
        &Axes {
            caption: "density extrema (log scale)",
            y_desc: "density",
            y_format: power_of_ten,
            legend: SeriesLabelPosition::MiddleRight,
        },
        &[
            Series {
                label: "max density",
                colour: BLUE,
                points: rows.iter().map(|r| (r.time, r.max[ID].log10())).collect(),
            },
            Series {
                label: "min density",
                colour: RED,
                points: rows.iter().map(|r| (r.time, r.min[ID].log10())).collect(),
            },
        ],
        time,
        0.1,
    )?;
    root.present().map_err(plot_error)
}
