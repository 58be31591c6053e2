//! A small RGB raster with line drawing, written as PNG.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

/// An 8-bit RGB image, rows top to bottom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    width: usize,
    height: usize,
    pixels: Vec<u8>,
}

impl Image {
    /// A `width x height` image filled with `background`.
    pub fn new(width: usize, height: usize, background: [u8; 3]) -> Image {
        Image {
            width,
            height,
            pixels: background.repeat(width * height),
        }
    }

    /// Sets pixel `(x, y)` (y down); pixels outside are ignored.
    pub fn set(&mut self, x: i64, y: i64, rgb: [u8; 3]) {
        if x < 0 || y < 0 || x as usize >= self.width || y as usize >= self.height {
            return;
        }
        let k = 3 * (y as usize * self.width + x as usize);
        self.pixels[k..k + 3].copy_from_slice(&rgb);
    }

    /// The pixels of row `y` (3 bytes each), mutably.
    pub fn row_mut(&mut self, y: usize) -> &mut [u8] {
        let w = 3 * self.width;
        &mut self.pixels[y * w..(y + 1) * w]
    }

    /// Draws a one-pixel line from `a` to `b` (Bresenham).
    pub fn line(&mut self, a: (i64, i64), b: (i64, i64), rgb: [u8; 3]) {
        let (mut x, mut y) = a;
        let (dx, dy) = ((b.0 - x).abs(), -(b.1 - y).abs());
        let (sx, sy) = ((b.0 - x).signum(), (b.1 - y).signum());
        let mut err = dx + dy;
        loop {
            self.set(x, y, rgb);
            if (x, y) == b {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    /// Writes the image as an 8-bit RGB PNG.
    pub fn write_png(&self, path: &Path) -> std::io::Result<()> {
        let file = BufWriter::new(File::create(path)?);
        let mut encoder = png::Encoder::new(file, self.width as u32, self.height as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.set_compression(png::Compression::Fast);
        encoder.set_filter(png::FilterType::NoFilter);
        let mut writer = encoder.write_header().map_err(std::io::Error::other)?;
        writer
            .write_image_data(&self.pixels)
            .map_err(std::io::Error::other)?;
        writer.finish().map_err(std::io::Error::other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_reach_both_ends() {
        let mut img = Image::new(10, 5, [0; 3]);
        img.line((1, 4), (8, 0), [9; 3]);
        img.line((-5, -5), (20, 20), [1; 3]);
        assert_eq!(img.pixels[3 * (4 * 10 + 1)], 9);
        assert_eq!(img.pixels[3 * 8], 9);
    }
}
