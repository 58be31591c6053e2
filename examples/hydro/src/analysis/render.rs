//! The rendering consumer: the density field through a colour map, with a
//! colour bar on the right, as PNG (and optionally the fields as VTK).

use super::colormap::{colormap, ColorTable};
use super::image::Image;
use crate::record::RecordView;
use crate::state::ID;

/// Blank columns between the field and the colour bar.
pub const COLORBAR_GAP: usize = 6;
/// Width of the colour bar in pixels.
pub const COLORBAR_WIDTH: usize = 16;

/// The first column of the colour bar in an image of a field `nx` wide.
pub fn colorbar_x(nx: usize) -> usize {
    nx + COLORBAR_GAP
}

/// The density of `record` (colours from `table`) scaled linearly from its minimum (bottom of the
/// colour bar) to its maximum (top), y up; the bar's row `y` of an image `h`
/// tall shows `colormap(1 - y / (h - 1))`.
pub fn render_density(record: &RecordView<'_>, table: &ColorTable) -> Image {
    let m = record.meta();
    let rho = record.field(ID);
    let (lo, hi) = rho
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    let span = if hi > lo { hi - lo } else { 1.0 };
    let width = colorbar_x(m.nx) + COLORBAR_WIDTH;
    let mut img = Image::new(width, m.ny, [255; 3]);
    let scale = 1.0 / span;
    for (j, row) in rho.chunks_exact(m.nx).enumerate() {
        let pixels = img.row_mut(m.ny - 1 - j);
        for (px, &v) in pixels.chunks_exact_mut(3).zip(row) {
            px.copy_from_slice(&table.get((v - lo) * scale));
        }
    }
    let top = (m.ny.max(2) - 1) as f64;
    for y in 0..m.ny {
        let c = colormap(1.0 - y as f64 / top);
        for x in colorbar_x(m.nx)..width {
            img.set(x as i64, y as i64, c);
        }
    }
    img
}
