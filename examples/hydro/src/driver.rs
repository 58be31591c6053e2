//! The time loop with in-transit output: steps the solver, hands records and
//! checkpoints to an [`Outlet`], and times the solver apart from the
//! hand-off.

use std::time::{Duration, Instant};

use crate::exec::BandExecutor;
use crate::outlet::{Capture, Outlet, OutletError, OutletReport};
use crate::progress::{Progress, Tick};
use crate::record::RecordMeta;
use crate::solver::{Solver, SolverError};

/// Why the loop stopped.
#[derive(Debug, thiserror::Error)]
pub enum DriveError {
    /// The solution broke down.
    #[error(transparent)]
    Solver(#[from] SolverError),
    /// The analyses failed.
    #[error(transparent)]
    Outlet(#[from] OutletError),
}

/// The in-transit side of a run: where records go.
pub struct Transit<'a> {
    /// The consumers.
    pub outlet: Box<dyn Outlet + 'a>,
    /// Steps between checkpoints (0: none).
    pub checkpoint_every: u64,
    /// Whether output records go to the analyses (else only checkpoints).
    pub records: bool,
}

impl std::fmt::Debug for Transit<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transit")
            .field("checkpoint_every", &self.checkpoint_every)
            .finish_non_exhaustive()
    }
}

/// What the loop did and where its time went.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DriveReport {
    /// Steps run.
    pub steps: u64,
    /// Wall time of the whole loop, analyses drained, in seconds.
    pub total_seconds: f64,
    /// Wall time inside the solver's steps, in seconds.
    pub solver_seconds: f64,
    /// Wall time handing records over (copies and waits), in seconds.
    pub handoff_seconds: f64,
    /// Part of the hand-off spent waiting for the consumers to make room.
    pub wait_seconds: f64,
    /// Wall time waiting for the consumers to finish after the last step.
    pub drain_seconds: f64,
    /// What the consumers did, when there were any.
    pub outlet: Option<OutletReport>,
}

/// Runs `solver` to its end, handing records to `transit` at the solver's
/// output points, at the start of a fresh run and at the end, and
/// checkpoints every `checkpoint_every` steps.
pub fn drive<E: BandExecutor>(
    solver: &mut Solver<E>,
    mut transit: Option<Transit<'_>>,
    progress: &mut Progress,
) -> Result<DriveReport, DriveError> {
    let start = Instant::now();
    let first = solver.step_count();
    let cells = (solver.params().nx * solver.params().ny) as f64;
    let mut report = DriveReport::default();
    let (mut solver_time, mut handoff, mut waited) =
        (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    if let (Some(t @ Transit { records: true, .. }), 0) = (&mut transit, first) {
        let (d, w) = hand_off(solver, t, true, false)?;
        handoff += d;
        waited += w;
    }
    while !solver.is_done() {
        let step_start = Instant::now();
        solver.advance()?;
        solver_time += step_start.elapsed();
        progress.tick(Tick {
            step: solver.step_count(),
            time: solver.time(),
            mcells_per_second: cells * (solver.step_count() - first) as f64
                / solver_time.as_secs_f64()
                / 1e6,
        });
        if let Some(t) = &mut transit {
            let record_due = t.records && (solver.output_due() || solver.is_done());
            let checkpoint_due =
                t.checkpoint_every > 0 && solver.step_count() % t.checkpoint_every == 0;
            if record_due || checkpoint_due {
                let (d, w) = hand_off(solver, t, record_due, checkpoint_due)?;
                handoff += d;
                waited += w;
            }
        }
    }
    progress.finish();
    let drain_start = Instant::now();
    if let Some(t) = transit {
        report.outlet = Some(t.outlet.finish()?);
    }
    report.drain_seconds = drain_start.elapsed().as_secs_f64();
    report.steps = solver.step_count() - first;
    report.total_seconds = start.elapsed().as_secs_f64();
    report.solver_seconds = solver_time.as_secs_f64();
    report.handoff_seconds = handoff.as_secs_f64();
    report.wait_seconds = waited.as_secs_f64();
    Ok(report)
}

/// Hands the state on as an output and/or a checkpoint; returns the time
/// it took and the part spent waiting.
fn hand_off<E: BandExecutor>(
    solver: &Solver<E>,
    t: &mut Transit<'_>,
    output: bool,
    checkpoint: bool,
) -> Result<(Duration, Duration), OutletError> {
    let start = Instant::now();
    let meta = RecordMeta {
        step: solver.step_count(),
        time: solver.time(),
        dt: solver.dt(),
        producer: 0,
        nx: solver.params().nx,
        ny: solver.params().ny,
        dx: solver.params().dx,
    };
    let waited = t.outlet.hand_off(Capture {
        state: solver.state(),
        meta,
        params: solver.params(),
        output,
        checkpoint,
    })?;
    Ok((start.elapsed(), waited))
}
