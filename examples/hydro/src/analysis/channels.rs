//! The channel transport: consumers on threads fed by crossbeam channels,
//! records staged in a [`RecordRing`].
//!
//! The statistics consumer sees every record; the renderer group members
//! share the records round-robin (each to exactly one member, the members'
//! shares differing by one at most); the checkpoint archiver stores the
//! checkpoints in the archive, as the CDO transport's does.

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cdo::archive::Archive;
use crossbeam::channel::{self, Receiver, Sender};

use super::consumers::{self, ArchiverDone, Renderer, StatsConsumer, StatsDone};
use super::{spawn, AnalysisOptions};
use crate::checkpoint::{CheckpointError, CheckpointRef};
use crate::checkpoint_archive;
use crate::outlet::{Capture, Outlet, OutletError, OutletReport};
use crate::record::{CheckpointJob, RecordRing, SharedRecord};

/// Consumers on threads, fed by channels.
pub struct ChannelOutlet {
    ring: RecordRing,
    stats: Option<Sender<SharedRecord>>,
    /// One queue per renderer group member (empty once finished).
    renders: Vec<Sender<SharedRecord>>,
    checkpoints: Option<Sender<CheckpointJob>>,
    stats_thread: Option<JoinHandle<Result<StatsDone, OutletError>>>,
    render_threads: Vec<JoinHandle<Result<Renderer, OutletError>>>,
    archive_thread: Option<JoinHandle<Result<ArchiverDone, OutletError>>>,
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
    /// Creates the output directory and starts the consumers, records
    /// staged in `ring` (the checkpoint archiver with an archive).
    ///
    /// # Errors
    /// When the directory, the CSV file or the archive cannot be created.
    pub fn start(
        options: &AnalysisOptions,
        ring: RecordRing,
    ) -> Result<ChannelOutlet, OutletError> {
        consumers::create_dir(options)?;
        // The ring of record buffers bounds what is in flight, so the
        // channels need no bound of their own.
        let (stats_tx, stats_rx) = channel::unbounded();
        let (chk_tx, chk_rx) = channel::unbounded();
        let stats_thread = if options.analyses {
            let stats = StatsConsumer::create(options)?;
            Some(spawn("hydro-stats", &options.dir, move || {
                run_stats(&stats_rx, stats)
            })?)
        } else {
            None
        };
        let archive_thread = match &options.archive {
            Some(dir) => {
                let archive = Archive::open(dir).map_err(CheckpointError::from)?;
                Some(spawn("hydro-archiver", dir, move || {
                    run_archiver(&chk_rx, &archive)
                })?)
            }
            None => None,
        };
        let mut renders = Vec::new();
        let render_threads = (0..options.renderers.max(1))
            .map(|k| {
                let (render_tx, records) = channel::unbounded();
                renders.push(render_tx);
                let renderer = Renderer::new(&options.dir, options.vtk);
                spawn(&format!("hydro-render-{k}"), &options.dir, move || {
                    run_member(&records, renderer)
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ChannelOutlet {
            ring,
            stats: Some(stats_tx),
            renders,
            checkpoints: archive_thread.is_some().then_some(chk_tx),
            stats_thread,
            render_threads,
            archive_thread,
            records: 0,
            bytes: 0,
        })
    }

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
}

impl Outlet for ChannelOutlet {
    fn hand_off(&mut self, capture: Capture<'_>) -> Result<Duration, OutletError> {
        let (record, waited) = self.ring.capture(capture.state, capture.meta);
        if capture.checkpoint {
            self.checkpoints
                .as_ref()
                .ok_or(OutletError::Closed("checkpoint"))?
                .send(CheckpointJob {
                    params: capture.params.clone(),
                    record: record.clone(),
                })
                .map_err(|_| OutletError::Closed("checkpoint"))?;
        }
        if capture.output {
            self.publish(record)?;
        }
        Ok(waited)
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
        let stats = self.stats_thread.map(|h| h.join().map_err(|_| ()));
        let renderers = self
            .render_threads
            .into_iter()
            .map(|h| h.join().map_err(|_| ()))
            .collect();
        let archiver = self.archive_thread.map(|h| h.join().map_err(|_| ()));
        consumers::collect(&mut report, stats, renderers, archiver)?;
        Ok(report)
    }
}

/// The statistics consumer's loop.
fn run_stats(
    records: &Receiver<SharedRecord>,
    mut stats: StatsConsumer,
) -> Result<StatsDone, OutletError> {
    for record in records {
        stats.take(&record.view())?;
    }
    stats.finish()
}

/// A renderer group member's loop.
fn run_member(
    records: &Receiver<SharedRecord>,
    mut renderer: Renderer,
) -> Result<Renderer, OutletError> {
    for record in records {
        renderer.render(&record.view())?;
    }
    Ok(renderer)
}

/// The checkpoint archiver's loop: each checkpoint into `archive`.
fn run_archiver(
    jobs: &Receiver<CheckpointJob>,
    archive: &Archive,
) -> Result<ArchiverDone, OutletError> {
    let mut done = ArchiverDone::default();
    for job in jobs {
        let start = Instant::now();
        let view = job.record.view();
        let meta = *view.meta();
        let state = view.to_state();
        let checkpoint = CheckpointRef {
            params: &job.params,
            state: &state,
            step: meta.step,
            time: meta.time,
            dt: meta.dt,
        };
        let path = checkpoint_archive::store(archive, &meta, checkpoint)?;
        done.checkpoints.push(path);
        done.busy += start.elapsed();
    }
    Ok(done)
}
