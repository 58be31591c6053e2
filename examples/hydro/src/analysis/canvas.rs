//! An RGB picture that plotters draws on, written as PNG, and the text
//! style of every figure (DejaVu Sans, shipped with the sources, so that no
//! system font is needed).

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::{BitMapBackend, DrawingArea, DrawingAreaErrorKind, IntoDrawingArea};
use plotters::style::{FontFamily, FontStyle, IntoFont, TextStyle};

/// The figures' font, DejaVu Sans (licence in `fonts/LICENSE-DejaVu.txt`).
static FONT: &[u8] = include_bytes!("../../fonts/DejaVuSans.ttf");

/// Registers [`FONT`] as plotters' sans-serif face, once.
fn register_font() -> std::io::Result<()> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
            .map_err(|_| "the shipped font does not parse".to_string())
    })
    .clone()
    .map_err(std::io::Error::other)
}

/// The figures' text style at `size` pixels.
pub fn text(size: u32) -> TextStyle<'static> {
    (FontFamily::SansSerif, f64::from(size)).into_font().into()
}

/// A plotters error as an I/O error.
pub fn plot_error<E: std::error::Error + Send + Sync>(
    e: DrawingAreaErrorKind<E>,
) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// An 8-bit RGB picture on a white background, rows top to bottom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canvas {
    width: u32,
    height: u32,
    pixels: Vec<u8>,
}

impl Canvas {
    /// A white `width x height` picture.
    pub fn new(width: u32, height: u32) -> Canvas {
        Canvas {
            width,
            height,
            pixels: vec![255; 3 * width as usize * height as usize],
        }
    }

    /// The whole picture as a plotters drawing area.
    ///
    /// # Errors
    /// When the figures' font cannot be registered.
    pub fn area(&mut self) -> std::io::Result<DrawingArea<BitMapBackend<'_>, Shift>> {
        register_font()?;
        let size = (self.width, self.height);
        let backend = BitMapBackend::with_buffer_and_format(&mut self.pixels, size)
            .map_err(std::io::Error::other)?;
        Ok(backend.into_drawing_area())
    }

    /// Writes the picture as an 8-bit RGB PNG.
    pub fn write_png(&self, path: &Path) -> std::io::Result<()> {
        let file = BufWriter::new(File::create(path)?);
        let mut encoder = png::Encoder::new(file, self.width, self.height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.set_compression(png::Compression::Fast);
        let mut writer = encoder.write_header().map_err(std::io::Error::other)?;
        writer
            .write_image_data(&self.pixels)
            .map_err(std::io::Error::other)?;
        writer.finish().map_err(std::io::Error::other)
    }
}
