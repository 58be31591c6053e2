//! The work of the consumers, whatever transport feeds them: the
//! statistics consumer (a CSV row per record) and a
//! renderer group member (density images, VTK files); what the checkpoint
//! archiver did.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::colormap::ColorTable;
use super::stats::{self, StatsCsv, StatsRow};
use super::STATS_CSV;
use super::{density_png, fields_vtk, io_error, render, vtk, AnalysisOptions};
use crate::outlet::{OutletError, OutletReport};
use crate::record::RecordView;

/// Creates the output directory of the analyses.
///
/// # Errors
/// When it cannot be created.
pub fn create_dir(options: &AnalysisOptions) -> Result<(), OutletError> {
    std::fs::create_dir_all(&options.dir).map_err(io_error(&options.dir))
}

/// The statistics consumer: one CSV row per record (plotted with the
/// end-of-run report, [`crate::physics`]).
#[derive(Debug)]
pub struct StatsConsumer {
    csv: StatsCsv,
    dir: PathBuf,
    /// Steps of the records of this run.
    steps: Vec<u64>,
    busy: Duration,
}

/// What the statistics consumer did.
#[derive(Debug, Clone, PartialEq)]
pub struct StatsDone {
    /// Steps of the records seen, in order.
    pub steps: Vec<u64>,
    /// Wall time spent working.
    pub busy: Duration,
}

impl StatsConsumer {
    /// Creates the CSV file (keeping the rows up to `resume_after` of an
    /// earlier run), the directory being there.
    ///
    /// # Errors
    /// When the CSV file cannot be read or created.
    pub fn create(options: &AnalysisOptions) -> Result<StatsConsumer, OutletError> {
        let csv_path = options.dir.join(STATS_CSV);
        let kept = match options.resume_after {
            Some(step) => stats::rows_up_to(&csv_path, step).map_err(io_error(&csv_path))?,
            None => Vec::new(),
        };
        let csv = StatsCsv::create(&csv_path, crate::state::FIELD_NAMES, &kept)
            .map_err(io_error(&csv_path))?;
        Ok(StatsConsumer {
            csv,
            dir: options.dir.clone(),
            steps: Vec::new(),
            busy: Duration::ZERO,
        })
    }

    /// Appends the statistics of `record`.
    ///
    /// # Errors
    /// When the CSV row cannot be written.
    pub fn take(&mut self, record: &RecordView<'_>) -> Result<(), OutletError> {
        let start = Instant::now();
        let row = StatsRow::of(record);
        let csv_path = self.dir.join(STATS_CSV);
        self.csv.write(&row).map_err(io_error(&csv_path))?;
        self.steps.push(row.step);
        self.busy += start.elapsed();
        Ok(())
    }

    /// Flushes the CSV.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn finish(self) -> Result<StatsDone, OutletError> {
        let start = Instant::now();
        let csv_path = self.dir.join(STATS_CSV);
        self.csv.finish().map_err(io_error(&csv_path))?;
        Ok(StatsDone {
            steps: self.steps,
            busy: self.busy + start.elapsed(),
        })
    }
}

/// A member of the renderer group: renders records.
#[derive(Debug)]
pub struct Renderer {
    dir: PathBuf,
    vtk: bool,
    table: ColorTable,
    /// Steps of the records rendered.
    pub rendered: Vec<u64>,
    /// Wall time spent working.
    pub busy: Duration,
}

impl Renderer {
    /// A member writing into `dir`, VTK files too with `vtk`.
    pub fn new(dir: &Path, vtk: bool) -> Renderer {
        Renderer {
            dir: dir.into(),
            vtk,
            table: ColorTable::default(),
            rendered: Vec::new(),
            busy: Duration::ZERO,
        }
    }

    /// Writes the density image (and the VTK file) of `record`.
    ///
    /// # Errors
    /// When a file cannot be written.
    pub fn render(&mut self, record: &RecordView<'_>) -> Result<(), OutletError> {
        let start = Instant::now();
        let step = record.meta().step;
        let png = self.dir.join(density_png(step));
        render::render_density(record, &self.table)
            .and_then(|frame| frame.write_png(&png))
            .map_err(io_error(&png))?;
        if self.vtk {
            let path = self.dir.join(fields_vtk(step));
            vtk::write_vtk(&path, record).map_err(io_error(&path))?;
        }
        self.rendered.push(step);
        self.busy += start.elapsed();
        Ok(())
    }
}

/// What the checkpoint archiver did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ArchiverDone {
    /// The data files of the checkpoints archived.
    pub checkpoints: Vec<PathBuf>,
    /// Wall time spent working.
    pub busy: Duration,
}

/// How a consumer thread ended: its result, or `Err(())` when it panicked.
pub type Joined<T> = Result<Result<T, OutletError>, ()>;

/// Collects what the consumer threads did into `report`: the statistics
/// consumer's outcome, each renderer's in member order, the checkpoint
/// archiver's; keeps the first failure.
pub fn collect(
    report: &mut OutletReport,
    stats: Option<Joined<StatsDone>>,
    renderers: Vec<Joined<Renderer>>,
    archiver: Option<Joined<ArchiverDone>>,
) -> Result<(), OutletError> {
    let mut first_error = None;
    match stats {
        Some(Ok(Ok(done))) => {
            report.stats_steps = done.steps;
            report.busy_seconds += done.busy.as_secs_f64();
        }
        Some(Ok(Err(e))) => first_error = Some(e),
        Some(Err(())) => first_error = Some(OutletError::Panicked("statistics")),
        None => {}
    }
    for outcome in renderers {
        match outcome {
            Ok(Ok(member)) => {
                report.busy_seconds += member.busy.as_secs_f64();
                report.rendered_steps.push(member.rendered);
            }
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(()) => {
                first_error.get_or_insert(OutletError::Panicked("rendering"));
            }
        }
    }
    match archiver {
        Some(Ok(Ok(done))) => {
            report.busy_seconds += done.busy.as_secs_f64();
            report.checkpoints = done.checkpoints;
        }
        Some(Ok(Err(e))) => {
            first_error.get_or_insert(e);
        }
        Some(Err(())) => {
            first_error.get_or_insert(OutletError::Panicked("checkpoint archiver"));
        }
        None => {}
    }
    first_error.map_or(Ok(()), Err)
}
