//! The rendering consumer's frame: the density field on one fixed
//! logarithmic colour scale, with axes in the domain's units, the time and
//! step in the title, and a colour bar with its values.
//!
//! Every frame of every run uses the same scale, [`DENSITY_SCALE`], so that
//! the frames of a run make a film whose colours mean the same throughout.

use plotters::prelude::*;

use super::canvas::{plot_error, text, Canvas};
use super::colormap::ColorTable;
use crate::record::RecordView;
use crate::state::ID;

/// The density range of the colour scale, `[lo, hi]`, drawn on a log scale;
/// densities outside take the colour of the nearer end. It spans the
/// near-vacuum inside a blast (1e-3 of the gas at rest, whose density is 1)
/// to the peaks where reflected shocks meet (about 60 in the main job), and
/// Sod's tube (0.125 to 1).
pub const DENSITY_SCALE: (f64, f64) = (1e-3, 100.0);

/// Longest side of the field in pixels.
const FIELD: f64 = 480.0;
/// Height of the title above the field.
const TOP: u32 = 36;
/// Height of the x axis's labels below the field.
const BOTTOM: u32 = 48;
/// Width of the y axis's labels left of the field.
const LEFT: u32 = 64;
/// Space between the field and the colour bar.
const GAP: u32 = 24;
/// Width of the colour bar.
const BAR: u32 = 22;
/// Width of the colour bar's labels.
const BAR_LABELS: u32 = 72;
/// Margin right of the colour bar's labels.
const RIGHT: u32 = 8;

/// Size in pixels of the field of an `nx x ny` grid in a frame: the longer
/// side 480 pixels, cells drawn by nearest neighbour.
pub fn field_size(nx: usize, ny: usize) -> (u32, u32) {
    let scale = FIELD / nx.max(ny).max(1) as f64;
    let side = |n: usize| ((n as f64 * scale).round() as u32).max(1);
    (side(nx), side(ny))
}

/// Size in pixels of the frame of an `nx x ny` grid.
pub fn frame_size(nx: usize, ny: usize) -> (u32, u32) {
    let (w, h) = field_size(nx, ny);
    (LEFT + w + GAP + BAR + BAR_LABELS + RIGHT, TOP + h + BOTTOM)
}

/// The position of `rho` on [`DENSITY_SCALE`], in `[0, 1]` (clamped).
pub fn density_fraction(rho: f64) -> f64 {
    let (lo, hi) = DENSITY_SCALE;
    ((rho.max(lo).ln() - lo.ln()) / (hi.ln() - lo.ln())).clamp(0.0, 1.0)
}

/// Tick label of the colour bar: the value with as many decimals as it
/// needs (`0.001`, `0.1`, `1`, `10`).
fn tick(v: &f64) -> String {
    let decimals = (-v.log10().floor()).max(0.0) as usize;
    format!("{v:.decimals$}")
}

/// The frame of `record` (colours from `table`, y up).
///
/// # Errors
/// When plotters fails to draw (its font cannot be registered).
pub fn render_density(record: &RecordView<'_>, table: &ColorTable) -> std::io::Result<Canvas> {
    let m = record.meta();
    let (w, h) = frame_size(m.nx, m.ny);
    let mut canvas = Canvas::new(w, h);
    draw_frame(&canvas.area()?, record, table)?;
    Ok(canvas)
}

/// Draws the frame of `record` on `root`, [`frame_size`] large.
fn draw_frame(
    root: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    record: &RecordView<'_>,
    table: &ColorTable,
) -> std::io::Result<()> {
    let m = record.meta();
    let rho = record.field(ID);
    let (fw, fh) = field_size(m.nx, m.ny);
    let title = format!("density (log scale)   t = {:.4}   step {}", m.time, m.step);
    root.draw(&Text::new(title, (LEFT as i32, 8), text(20)))
        .map_err(plot_error)?;
    let (left, right) = root.split_horizontally(LEFT + fw + GAP);

    let (lx, ly) = (m.nx as f64 * m.dx, m.ny as f64 * m.dx);
    let left = left.margin(TOP, 0, 0, GAP);
    let mut field = ChartBuilder::on(&left)
        .x_label_area_size(BOTTOM)
        .y_label_area_size(LEFT)
        .build_cartesian_2d(0.0..lx, 0.0..ly)
        .map_err(plot_error)?;
    field
        .configure_mesh()
        .disable_mesh()
        .x_desc("x")
        .y_desc("y")
        .label_style(text(14))
        .axis_desc_style(text(16))
        .draw()
        .map_err(plot_error)?;
    let pixels = field.plotting_area().strip_coord_spec();
    for py in 0..fh {
        let j = m.ny - 1 - (py as usize * m.ny / fh as usize);
        let row = &rho[j * m.nx..(j + 1) * m.nx];
        for px in 0..fw {
            let [r, g, b] = table.get(density_fraction(row[px as usize * m.nx / fw as usize]));
            pixels
                .draw_pixel((px as i32, py as i32), &RGBColor(r, g, b))
                .map_err(plot_error)?;
        }
    }

    let (lo, hi) = DENSITY_SCALE;
    let right = right.margin(TOP, BOTTOM, 0, RIGHT);
    let mut bar = ChartBuilder::on(&right)
        .right_y_label_area_size(BAR_LABELS)
        .build_cartesian_2d(0.0..1.0, (lo..hi).log_scale())
        .map_err(plot_error)?;
    bar.configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .y_desc("density")
        .y_label_formatter(&tick)
        .label_style(text(14))
        .axis_desc_style(text(16))
        .draw()
        .map_err(plot_error)?;
    let strip = bar.plotting_area().strip_coord_spec();
    for py in 0..fh as i32 {
        let [r, g, b] = table.get(1.0 - (py as f64 + 0.5) / fh as f64);
        strip
            .draw(&Rectangle::new(
                [(0, py), (BAR as i32, py + 1)],
                RGBColor(r, g, b).filled(),
            ))
            .map_err(plot_error)?;
    }
    root.present().map_err(plot_error)
}
