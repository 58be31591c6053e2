//! The CDO transport: the analyses as consumer groups of a [`cdo::Pool`],
//! the Maestro way.
//!
//! At an output point the solver offers a CDO group `hydro/output/<step>`
//! of one `f64` CDO per field (`.../rho`, `.../rhou`, `.../rhov`,
//! `.../E`), allocated by the pool from the solver's own mamba with its
//! memory policy, at `output` priority, with the `hydro.*` attributes of
//! [`attributes::SCHEMA`]. A checkpoint is one CDO
//! `hydro/checkpoint/<step>` at `checkpoint` priority whose bytes are a
//! [checkpoint](crate::checkpoint) (parameters, clock and the four fields).
//!
//! The statistics consumer is a consumer group of its own (every record);
//! the renderers are one consumer group (each record to exactly one
//! member); the checkpoint archiver, a third group, stores the checkpoints
//! in the [archive](crate::checkpoint_archive). Consumers demand the
//! members without copying and complete the record when done; the
//! producer keeps at most `in_flight` offers out and withdraws and
//! disposes the oldest (waiting for every group to complete it) before
//! offering more, so memory returns to the pool and the solver waits
//! instead of dropping records.

pub mod attributes;
pub mod consumers;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cdo::archive::Archive;
use cdo::{Cdo, GroupOffer, Pool, Priority};
use crossbeam::channel;
use mamba::Policy;

use crate::analysis::consumers::{self as work, ArchiverDone, Renderer, StatsConsumer, StatsDone};
use crate::analysis::AnalysisOptions;
use crate::checkpoint::CheckpointError;
use crate::outlet::{Capture, Outlet, OutletError, OutletReport, PoolReport};
use crate::state::{FIELD_NAMES, NVAR};
use attributes::{checkpoint_name, output_name, set_checkpoint, set_field, set_meta};

/// An offer still out, withdrawn once every consumer group completed it.
#[derive(Debug)]
enum InFlight<'p> {
    Record(GroupOffer<'p>),
    Checkpoint(Cdo<'p>),
}

impl InFlight<'_> {
    /// Withdraws and disposes the offer, waiting up to `timeout`; false
    /// (still out) on a timeout.
    fn retire(&mut self, timeout: Duration) -> Result<bool, OutletError> {
        let withdrawn = match self {
            InFlight::Record(g) => g.withdraw_timeout(timeout),
            InFlight::Checkpoint(c) => c.withdraw_timeout(timeout),
        };
        match withdrawn {
            Ok(()) => {}
            Err(cdo::Error::Timeout { .. }) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        match self {
            InFlight::Record(g) => g.dispose()?,
            InFlight::Checkpoint(c) => c.dispose()?,
        }
        Ok(true)
    }
}

/// The producer side of the CDO transport, and its consumer threads.
pub struct CdoOutlet<'p> {
    pool: &'p Pool,
    policy: Policy,
    in_flight: VecDeque<InFlight<'p>>,
    limit: usize,
    done: Arc<AtomicBool>,
    stats_thread: Option<JoinHandle<Result<StatsDone, OutletError>>>,
    render_threads: Vec<JoinHandle<Result<Renderer, OutletError>>>,
    archive_thread: Option<JoinHandle<Result<ArchiverDone, OutletError>>>,
    records: u64,
    bytes: u64,
}

impl std::fmt::Debug for CdoOutlet<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CdoOutlet")
            .field("in_flight", &self.in_flight.len())
            .field("records", &self.records)
            .finish_non_exhaustive()
    }
}

impl<'p> CdoOutlet<'p> {
    /// Creates the output directory and starts the consumers on `pool`
    /// (the analyses with `options.analyses`, the checkpoint archiver with
    /// `options.archive`); data goes where `policy` says, at most
    /// `in_flight` offers (at least 2) out at once.
    ///
    /// # Errors
    /// When the directory, the CSV file or the archive cannot be created,
    /// or a consumer cannot join its group.
    pub fn start(
        pool: &'p Arc<Pool>,
        policy: Policy,
        options: &AnalysisOptions,
        in_flight: usize,
    ) -> Result<CdoOutlet<'p>, OutletError> {
        work::create_dir(options)?;
        let done = Arc::new(AtomicBool::new(false));
        let (ready, joined) = channel::unbounded();
        let stats_thread = if options.analyses {
            let stats = StatsConsumer::create(options)?;
            let (ready, done) = (ready.clone(), Arc::clone(&done));
            Some(consumers::spawn(
                "hydro-stats".into(),
                &options.dir,
                pool,
                move |pool| consumers::run_stats(pool, stats, ready, &done),
            )?)
        } else {
            None
        };
        let renderers = if options.analyses {
            options.renderers.max(1)
        } else {
            0
        };
        let render_threads = (0..renderers)
            .map(|k| {
                let renderer = Renderer::new(&options.dir, options.vtk);
                let (ready, done) = (ready.clone(), Arc::clone(&done));
                consumers::spawn(
                    format!("hydro-render-{k}"),
                    &options.dir,
                    pool,
                    move |pool| consumers::run_renderer(pool, renderer, ready, &done),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let archive_thread = match &options.archive {
            Some(dir) => {
                let archive = Archive::open(dir).map_err(CheckpointError::from)?;
                let (ready, done) = (ready.clone(), Arc::clone(&done));
                Some(consumers::spawn(
                    "hydro-archiver".into(),
                    dir,
                    pool,
                    move |pool| consumers::run_archiver(pool, archive, ready, &done),
                )?)
            }
            None => None,
        };
        drop(ready);
        let threads = render_threads.len()
            + usize::from(stats_thread.is_some())
            + usize::from(archive_thread.is_some());
        let outlet = CdoOutlet {
            pool,
            policy,
            in_flight: VecDeque::new(),
            limit: in_flight.max(2),
            done,
            stats_thread,
            render_threads,
            archive_thread,
            records: 0,
            bytes: 0,
        };
        // Records offered before a group forms would not reach it.
        if joined.iter().take(threads).count() < threads {
            outlet.done.store(true, Ordering::Release);
            return Err(Box::new(outlet)
                .finish()
                .err()
                .unwrap_or(OutletError::Closed("analysis")));
        }
        Ok(outlet)
    }

    /// Retires the offers every group completed, then waits for the oldest
    /// while `limit` are out; returns the time waited.
    fn make_room(&mut self) -> Result<Duration, OutletError> {
        while let Some(oldest) = self.in_flight.front_mut() {
            if !oldest.retire(Duration::ZERO)? {
                break;
            }
            self.in_flight.pop_front();
        }
        let start = Instant::now();
        while self.in_flight.len() >= self.limit {
            if let Some(mut oldest) = self.in_flight.pop_front() {
                oldest.retire(Duration::MAX)?;
            }
        }
        Ok(start.elapsed())
    }

    /// Allocates `cdo`'s data and fills it with `fill`.
    fn fill(&self, cdo: &mut Cdo<'p>, fill: impl FnOnce(&mut [f64])) -> Result<(), OutletError> {
        let bytes = cdo.allocate(&self.policy)?;
        fill(bytemuck::cast_slice_mut(bytes));
        Ok(())
    }

    /// Offers the output record of `capture` as a CDO group.
    fn offer_record(&mut self, capture: &Capture<'_>) -> Result<(), OutletError> {
        let meta = &capture.meta;
        let mut group = self.pool.declare_group(&output_name(meta.step))?;
        for (var, name) in FIELD_NAMES.iter().enumerate() {
            let member = group.declare(name)?;
            set_meta(member, meta, Priority::Output)?;
            set_field(member, var, meta)?;
            self.fill(member, |out| capture.state.copy_interior(var, out))?;
        }
        group.offer()?;
        self.in_flight.push_back(InFlight::Record(group));
        self.records += 1;
        self.bytes += (NVAR * meta.nx * meta.ny * std::mem::size_of::<f64>()) as u64;
        Ok(())
    }

    /// Offers the state of `capture` as a checkpoint CDO.
    fn offer_checkpoint(&mut self, capture: &Capture<'_>) -> Result<(), OutletError> {
        let meta = &capture.meta;
        let checkpoint = capture.checkpoint_ref();
        let name = checkpoint_name(meta.step);
        let mut chk = self.pool.declare(&name)?;
        set_checkpoint(&mut chk, meta, checkpoint.encoded_len())?;
        let mut bytes = chk.allocate(&self.policy)?;
        checkpoint
            .encode(&mut bytes)
            .map_err(|source| CheckpointError::Io {
                path: name.into(),
                source,
            })?;
        chk.seal()?;
        chk.offer()?;
        self.in_flight.push_back(InFlight::Checkpoint(chk));
        Ok(())
    }
}

impl Outlet for CdoOutlet<'_> {
    fn hand_off(&mut self, capture: Capture<'_>) -> Result<Duration, OutletError> {
        let mut waited = Duration::ZERO;
        if capture.output {
            waited += self.make_room()?;
            self.offer_record(&capture)?;
        }
        if capture.checkpoint {
            waited += self.make_room()?;
            self.offer_checkpoint(&capture)?;
        }
        Ok(waited)
    }

    fn finish(mut self: Box<Self>) -> Result<OutletReport, OutletError> {
        self.done.store(true, Ordering::Release);
        let mut report = OutletReport {
            records: self.records,
            bytes: self.bytes,
            ..OutletReport::default()
        };
        let stats = self.stats_thread.take().map(|h| h.join().map_err(|_| ()));
        let renderers = std::mem::take(&mut self.render_threads)
            .into_iter()
            .map(|h| h.join().map_err(|_| ()))
            .collect();
        let archiver = self.archive_thread.take().map(|h| h.join().map_err(|_| ()));
        let consumed = work::collect(&mut report, stats, renderers, archiver);
        // Every group completed its records (or left): nothing waits now.
        while let Some(mut offer) = self.in_flight.pop_front() {
            offer.retire(Duration::MAX)?;
        }
        consumed?;
        let s = self.pool.stats();
        report.pool = Some(PoolReport {
            offered: s.offered,
            demanded: s.demanded,
            streamed: s.streamed,
            withdrawn: s.withdrawn,
            bytes_zero_copy: s.bytes_zero_copy,
            bytes_copied: s.bytes_copied,
        });
        Ok(report)
    }
}
