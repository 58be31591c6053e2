//! In-transit analyses on their own threads, fed through crossbeam channels:
//! a statistics consumer that sees every record, and a group of renderers
//! that share the records round-robin (each to exactly one member, the
//! members' shares differing by one at most) and also write the checkpoints,
//! whichever member is free, when no record is pending.

pub mod colormap;
pub mod font;
pub mod image;
pub mod plot;
pub mod priority;
pub mod render;
pub mod stats;
pub mod vtk;

use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam::channel::{self, Receiver, Sender};

use crate::checkpoint_dir::write_checkpoint;
use crate::outlet::{Outlet, OutletError, OutletReport};
use crate::record::{CheckpointJob, SharedRecord};
use colormap::ColorTable;
use stats::{StatsCsv, StatsRow};

/// Name of the statistics CSV file in the output directory.
pub const STATS_CSV: &str = "stats.csv";
/// Name of the statistics plot in the output directory.
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
    /// Run the statistics consumer (off: the group only writes checkpoints).
    pub analyses: bool,
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

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> OutletError + '_ {
    move |source| OutletError::Io {
        path: path.into(),
        source,
    }
}

/// Consumers on threads, fed by channels.
pub struct ChannelOutlet {
    stats: Option<Sender<SharedRecord>>,
    /// One queue per renderer group member (empty once finished).
    renders: Vec<Sender<SharedRecord>>,
    checkpoints: Option<Sender<CheckpointJob>>,
    stats_thread: Option<JoinHandle<Result<StatsDone, OutletError>>>,
    render_threads: Vec<JoinHandle<Result<Member, OutletError>>>,
    records: u64,
    bytes: u64,
}

impl std::fmt::Debug for ChannelOutlet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelOutlet")
            .field("renderers", &self.render_threads.len())
            .field("records", &self.records)
            .finish()
    }
}

impl ChannelOutlet {
    /// Creates the output directory and starts the consumers.
    ///
    /// # Errors
    /// When the directory or the CSV file cannot be created.
    pub fn start(options: &AnalysisOptions) -> Result<ChannelOutlet, OutletError> {
        std::fs::create_dir_all(&options.dir).map_err(io_error(&options.dir))?;
        // The ring of record buffers bounds what is in flight, so the
        // channels need no bound of their own.
        let (stats_tx, stats_rx) = channel::unbounded();
        let (chk_tx, chk_rx) = channel::unbounded();
        let stats_thread = if options.analyses {
            let csv_path = options.dir.join(STATS_CSV);
            let kept = match options.resume_after {
                Some(step) => stats::rows_up_to(&csv_path, step).map_err(io_error(&csv_path))?,
                None => Vec::new(),
            };
            let csv = StatsCsv::create(&csv_path, crate::state::FIELD_NAMES, &kept)
                .map_err(io_error(&csv_path))?;
            let dir = options.dir.clone();
            let handle = std::thread::Builder::new()
                .name("hydro-stats".into())
                .spawn(move || {
                    priority::lower_this_thread();
                    run_stats(&stats_rx, csv, kept, &dir)
                })
                .map_err(io_error(&options.dir))?;
            Some(handle)
        } else {
            None
        };
        let mut renders = Vec::new();
        let render_threads = (0..options.renderers.max(1))
            .map(|k| {
                let (render_tx, records) = channel::unbounded();
                renders.push(render_tx);
                let checkpoints = chk_rx.clone();
                let (dir, vtk) = (options.dir.clone(), options.vtk);
                std::thread::Builder::new()
                    .name(format!("hydro-render-{k}"))
                    .spawn(move || {
                        priority::lower_this_thread();
                        run_member(records, checkpoints, &dir, vtk)
                    })
                    .map_err(io_error(&options.dir))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ChannelOutlet {
            stats: Some(stats_tx),
            renders,
            checkpoints: Some(chk_tx),
            stats_thread,
            render_threads,
            records: 0,
            bytes: 0,
        })
    }
}

impl Outlet for ChannelOutlet {
    fn publish(&mut self, record: SharedRecord) -> Result<(), OutletError> {
        let bytes = record.bytes() as u64;
        let member = self.records as usize % self.renders.len().max(1);
        let (Some(stats), Some(render)) = (&self.stats, self.renders.get(member)) else {
            return Err(OutletError::Closed("analysis"));
        };
        stats
            .send(record.clone())
            .map_err(|_| OutletError::Closed("statistics"))?;
        render
            .send(record)
            .map_err(|_| OutletError::Closed("rendering"))?;
        self.records += 1;
        self.bytes += bytes;
        Ok(())
    }

    fn checkpoint(&mut self, job: CheckpointJob) -> Result<(), OutletError> {
        self.checkpoints
            .as_ref()
            .ok_or(OutletError::Closed("checkpoint"))?
            .send(job)
            .map_err(|_| OutletError::Closed("checkpoint"))
    }

    fn finish(mut self: Box<Self>) -> Result<OutletReport, OutletError> {
        // Dropping the senders ends the consumers' loops.
        drop((
            self.stats.take(),
            std::mem::take(&mut self.renders),
            self.checkpoints.take(),
        ));
        let mut report = OutletReport {
            records: self.records,
            bytes: self.bytes,
            ..OutletReport::default()
        };
        let mut first_error = None;
        if let Some(handle) = self.stats_thread {
            match handle.join() {
                Ok(Ok(done)) => {
                    report.stats_steps = done.steps;
                    report.busy_seconds += done.busy.as_secs_f64();
                }
                Ok(Err(e)) => first_error = Some(e),
                Err(_) => first_error = Some(OutletError::Panicked("statistics")),
            }
        }
        for handle in self.render_threads {
            match handle.join() {
                Ok(Ok(member)) => {
                    report.busy_seconds += member.busy.as_secs_f64();
                    report.rendered_steps.push(member.rendered);
                    report.checkpoints.extend(member.checkpoints);
                }
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(_) => {
                    first_error.get_or_insert(OutletError::Panicked("rendering"));
                }
            }
        }
        report.checkpoints.sort();
        match first_error {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }
}

/// What the statistics consumer did.
struct StatsDone {
    /// Steps of the records seen, in order.
    steps: Vec<u64>,
    /// Wall time spent working.
    busy: Duration,
}

/// The statistics consumer's loop: a CSV row per record, then the plot of
/// the `earlier` rows and the new ones.
fn run_stats(
    records: &Receiver<SharedRecord>,
    mut csv: StatsCsv,
    earlier: Vec<StatsRow>,
    dir: &Path,
) -> Result<StatsDone, OutletError> {
    let csv_path = dir.join(STATS_CSV);
    let first_new = earlier.len();
    let mut rows = earlier;
    let mut busy = Duration::ZERO;
    for record in records {
        let start = Instant::now();
        let row = StatsRow::of(&record);
        drop(record);
        csv.write(&row).map_err(io_error(&csv_path))?;
        rows.push(row);
        busy += start.elapsed();
    }
    let start = Instant::now();
    csv.finish().map_err(io_error(&csv_path))?;
    let plot_path = dir.join(STATS_PNG);
    plot::plot_stats(&plot_path, &rows).map_err(io_error(&plot_path))?;
    busy += start.elapsed();
    Ok(StatsDone {
        steps: rows[first_new..].iter().map(|r| r.step).collect(),
        busy,
    })
}

/// What one renderer group member did.
struct Member {
    rendered: Vec<u64>,
    checkpoints: Vec<PathBuf>,
    busy: Duration,
    table: ColorTable,
}

/// Work for a renderer group member.
enum Work {
    Render(SharedRecord),
    Checkpoint(CheckpointJob),
}

impl Member {
    /// Renders a record or writes a checkpoint, timing it.
    fn handle(&mut self, work: Work, dir: &Path, vtk: bool) -> Result<(), OutletError> {
        let start = Instant::now();
        match work {
            Work::Render(record) => {
                let step = record.meta().step;
                let png = dir.join(density_png(step));
                render::render_density(&record, &self.table)
                    .write_png(&png)
                    .map_err(io_error(&png))?;
                if vtk {
                    let path = dir.join(fields_vtk(step));
                    vtk::write_vtk(&path, &record).map_err(io_error(&path))?;
                }
                self.rendered.push(step);
            }
            Work::Checkpoint(job) => self.checkpoints.push(write_checkpoint(dir, &job)?),
        }
        self.busy += start.elapsed();
        Ok(())
    }
}

/// A renderer group member's loop: records first; checkpoints only when no
/// record is waiting.
fn run_member(
    records: Receiver<SharedRecord>,
    checkpoints: Receiver<CheckpointJob>,
    dir: &Path,
    vtk: bool,
) -> Result<Member, OutletError> {
    let mut member = Member {
        rendered: Vec::new(),
        checkpoints: Vec::new(),
        busy: Duration::ZERO,
        table: ColorTable::default(),
    };
    let mut queues = WorkQueues::new(records, checkpoints);
    while let Some(work) = queues.next() {
        member.handle(work, dir, vtk)?;
    }
    Ok(member)
}

/// The two queues a renderer group member serves, in priority order.
struct WorkQueues {
    records: Receiver<SharedRecord>,
    checkpoints: Receiver<CheckpointJob>,
    /// Whether each queue may still deliver (its senders are alive).
    open: (bool, bool),
}

impl WorkQueues {
    fn new(records: Receiver<SharedRecord>, checkpoints: Receiver<CheckpointJob>) -> Self {
        WorkQueues {
            records,
            checkpoints,
            open: (true, true),
        }
    }

    /// The next piece of work, waiting for one; `None` once both queues
    /// are closed and empty. Guided I/O: a pending record always goes
    /// before a pending checkpoint.
    fn next(&mut self) -> Option<Work> {
        loop {
            if let Ok(record) = self.records.try_recv() {
                return Some(Work::Render(record));
            }
            if let Ok(job) = self.checkpoints.try_recv() {
                return Some(Work::Checkpoint(job));
            }
            if self.open == (false, false) {
                return None;
            }
            channel::select! {
                recv(self.records) -> r => match r {
                    Ok(record) => return Some(Work::Render(record)),
                    Err(_) => {
                        self.open.0 = false;
                        self.records = channel::never();
                    }
                },
                recv(self.checkpoints) -> c => match c {
                    Ok(job) => return Some(Work::Checkpoint(job)),
                    Err(_) => {
                        self.open.1 = false;
                        self.checkpoints = channel::never();
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::Memory;
    use crate::params::Params;
    use crate::record::{RecordMeta, RecordRing};
    use crate::state::State;

    #[test]
    fn records_go_before_pending_checkpoints() {
        let ring = RecordRing::new(4, 4, 4, 0, &Memory::heap()).unwrap();
        let state = State::new(4, 4);
        let meta = |step| RecordMeta {
            step,
            time: 0.0,
            dt: 0.0,
            producer: 0,
            nx: 4,
            ny: 4,
            dx: 1.0,
        };
        let (records_tx, records) = channel::unbounded();
        let (checkpoints_tx, checkpoints) = channel::unbounded();
        checkpoints_tx
            .send(CheckpointJob {
                params: Params::default(),
                record: ring.capture(&state, meta(1)).0,
            })
            .unwrap();
        for step in [2, 3] {
            records_tx.send(ring.capture(&state, meta(step)).0).unwrap();
        }
        drop((records_tx, checkpoints_tx));
        let mut queues = WorkQueues::new(records, checkpoints);
        let order: Vec<(bool, u64)> = std::iter::from_fn(|| queues.next())
            .map(|w| match w {
                Work::Render(r) => (true, r.meta().step),
                Work::Checkpoint(c) => (false, c.record.meta().step),
            })
            .collect();
        assert_eq!(order, [(true, 2), (true, 3), (false, 1)]);
    }
}
