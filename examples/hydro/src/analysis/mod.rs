//! In-transit analyses on their own threads: a statistics consumer that
//! sees every record, a group of renderers that share the records (each
//! to exactly one member), and a checkpoint archiver.
//!
//! The consumers' work ([`consumers`]) is the same whatever feeds them:
//! crossbeam channels ([`channels`]) or a CDO pool
//! ([`crate::transit`]).
//!
//! Figures are drawn with plotters on a [`canvas::Canvas`]: the frames
//! ([`render`]) on one fixed log density scale with a labelled colour bar,
//! and at the end of a run the statistics plot ([`plot`], from the CSV
//! file, with [`crate::physics`]).

pub mod canvas;
pub mod channels;
pub mod colormap;
pub mod consumers;
pub mod plot;
pub mod priority;
pub mod render;
pub mod stats;
pub mod vtk;

use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use crate::outlet::OutletError;

pub use channels::ChannelOutlet;

/// Name of the statistics CSV file in the output directory.
pub const STATS_CSV: &str = "stats.csv";
/// Name of the statistics plot in the output directory (drawn at the end
/// of the run from the CSV file).
pub const STATS_PNG: &str = "stats.png";

/// What the analyses do and where they write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnalysisOptions {
    /// Output directory (created if missing).
    pub dir: PathBuf,
    /// Members of the renderer group (at least one).
    pub renderers: usize,
    /// Also write each record as a VTK file.
    pub vtk: bool,
    /// Run the statistics consumer and the renderers (off: checkpoints
    /// only).
    pub analyses: bool,
    /// The archive directory of the checkpoints (`None`: no checkpoints).
    pub archive: Option<PathBuf>,
    /// For a restart from this step: keep the statistics of earlier steps
    /// found in the directory (rows past it are dropped).
    pub resume_after: Option<u64>,
}

/// The file name of the density image of `step`.
pub fn density_png(step: u64) -> String {
    format!("density_{step:06}.png")
}

/// The file name of the VTK file of `step`.
pub fn fields_vtk(step: u64) -> String {
    format!("fields_{step:06}.vtk")
}

/// Maps an I/O error on `path` to an [`OutletError`].
pub(crate) fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> OutletError + '_ {
    move |source| OutletError::Io {
        path: path.into(),
        source,
    }
}

/// Starts a consumer thread `name` at low priority running `work`, for
/// files in `dir`.
///
/// # Errors
/// When the thread cannot be spawned.
pub(crate) fn spawn<T: Send + 'static>(
    name: &str,
    dir: &Path,
    work: impl FnOnce() -> Result<T, OutletError> + Send + 'static,
) -> Result<JoinHandle<Result<T, OutletError>>, OutletError> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            priority::lower_this_thread();
            work()
        })
        .map_err(io_error(dir))
}
