//! The channel transport: consumers on threads fed by crossbeam channels,
//! records staged in a [`RecordRing`].
//!
//! The statistics consumer sees every record; the renderer group members
//! share the records round-robin (each to exactly one member, the members'
//! shares differing by one at most) and also write the checkpoints,
//! whichever member is free, when no record is pending.

use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam::channel::{self, Receiver, Sender};

use super::consumers::{self, Renderer, StatsConsumer, StatsDone};
use super::{io_error, priority, AnalysisOptions};
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
    /// staged in `ring`.
    ///
    /// # Errors
    /// When the directory or the CSV file cannot be created.
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
            let handle = std::thread::Builder::new()
                .name("hydro-stats".into())
                .spawn(move || {
                    priority::lower_this_thread();
                    run_stats(&stats_rx, stats)
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
                let renderer = Renderer::new(&options.dir, options.vtk);
                std::thread::Builder::new()
                    .name(format!("hydro-render-{k}"))
                    .spawn(move || {
                        priority::lower_this_thread();
                        run_member(records, checkpoints, renderer)
                    })
                    .map_err(io_error(&options.dir))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ChannelOutlet {
            ring,
            stats: Some(stats_tx),
            renders,
            checkpoints: Some(chk_tx),
            stats_thread,
            render_threads,
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
        consumers::collect(&mut report, stats, renderers)?;
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

/// Work for a renderer group member.
enum Work {
    Render(SharedRecord),
    Checkpoint(CheckpointJob),
}

/// A renderer group member's loop: records first; checkpoints only when no
/// record is waiting.
fn run_member(
    records: Receiver<SharedRecord>,
    checkpoints: Receiver<CheckpointJob>,
    mut renderer: Renderer,
) -> Result<Renderer, OutletError> {
    let mut queues = WorkQueues::new(records, checkpoints);
    while let Some(work) = queues.next() {
        match work {
            Work::Render(record) => renderer.render(&record.view())?,
            Work::Checkpoint(job) => renderer.checkpoint(&job.params, &job.record.view())?,
        }
    }
    Ok(renderer)
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
