//! The time loop: CFL step, alternating split sweeps, stopping criteria.

use std::sync::Mutex;
use std::time::Instant;

use crate::boundary::fill_ghosts;
use crate::checkpoint::Checkpoint;
use crate::eos::Gas;
use crate::exec::BandExecutor;
use crate::init::initial_state_in;
use crate::memory::{Memory, MemoryError};
use crate::params::{ParamError, Params};
use crate::state::{Direction, State, ID, IP};
use crate::sweep::{sweep, worker_scratch, Kernel, Scratch};
use crate::timestep::courant_dt;

/// Why the time loop stopped early.
#[derive(Debug, thiserror::Error)]
pub enum SolverError {
    /// The CFL step is not a positive finite number: the state holds NaNs or
    /// infinities.
    #[error("time step {dt} at step {step} is not positive and finite: the solution broke down")]
    BadTimeStep {
        /// The step about to run.
        step: u64,
        /// The step size computed.
        dt: f64,
    },
}

/// Why a run could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// Bad parameters.
    #[error(transparent)]
    Params(#[from] ParamError),
    /// The state or the scratch buffers could not be allocated.
    #[error(transparent)]
    Memory(#[from] MemoryError),
}

/// What a call of [`Solver::run`] did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunSummary {
    /// Steps run by this call.
    pub steps: u64,
    /// Step count at the end (restarts included).
    pub total_steps: u64,
    /// Simulated time at the end.
    pub time: f64,
    /// Wall time of the loop, in seconds.
    pub wall_seconds: f64,
    /// Million cell updates per second of wall time (`nx * ny * steps`).
    pub mcells_per_second: f64,
}

/// A run in progress: the state, the clock and the workers.
pub struct Solver<E: BandExecutor> {
    params: Params,
    gas: Gas,
    state: State,
    step: u64,
    time: f64,
    dt: f64,
    next_output_time: f64,
    output_due: bool,
    exec: E,
    scratch: Vec<Mutex<Scratch>>,
}

impl<E: BandExecutor> Solver<E> {
    /// A run of `params` from its initial condition, on the heap.
    pub fn new(params: Params, exec: E) -> Result<Solver<E>, SetupError> {
        Solver::new_in(params, exec, &Memory::heap())
    }

    /// A run of `params` from its initial condition, with the state and the
    /// workers' scratch from `memory`.
    pub fn new_in(params: Params, exec: E, memory: &Memory) -> Result<Solver<E>, SetupError> {
        params.validate()?;
        let state = initial_state_in(&params, memory)?;
        Solver::from_parts(params, state, 0, 0.0, 0.0, exec, memory)
    }

    /// A run resuming from a checkpoint, possibly with changed parameters
    /// (band size, stopping criteria), on the heap.
    pub fn from_checkpoint(checkpoint: Checkpoint, exec: E) -> Result<Solver<E>, SetupError> {
        Solver::from_checkpoint_in(checkpoint, exec, &Memory::heap())
    }

    /// A run resuming from a checkpoint, with the state copied into and the
    /// workers' scratch taken from `memory`; the grid size of the parameters
    /// must match the state.
    pub fn from_checkpoint_in(
        checkpoint: Checkpoint,
        exec: E,
        memory: &Memory,
    ) -> Result<Solver<E>, SetupError> {
        let Checkpoint {
            params,
            state,
            step,
            time,
            dt,
        } = checkpoint;
        params.validate()?;
        if (params.nx, params.ny) != (state.nx(), state.ny()) {
            return Err(ParamError::Invalid(format!(
                "grid {}x{} does not match the checkpoint's {}x{}",
                params.nx,
                params.ny,
                state.nx(),
                state.ny()
            ))
            .into());
        }
        let state = state.copy_in(memory)?;
        Solver::from_parts(params, state, step, time, dt, exec, memory)
    }

    fn from_parts(
        params: Params,
        state: State,
        step: u64,
        time: f64,
        dt: f64,
        exec: E,
        memory: &Memory,
    ) -> Result<Self, SetupError> {
        let scratch = worker_scratch(&state, params.nxystep, &exec, memory)?;
        let next_output_time = if params.dtoutput > 0.0 {
            ((time / params.dtoutput).floor() + 1.0) * params.dtoutput
        } else {
            f64::INFINITY
        };
        Ok(Solver {
            gas: Gas::new(&params),
            params,
            state,
            step,
            time,
            dt,
            next_output_time,
            output_due: false,
            exec,
            scratch,
        })
    }

    /// The run's parameters.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The current state.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Steps done since t = 0.
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// Simulated time.
    pub fn time(&self) -> f64 {
        self.time
    }

    /// The last time step used (0 before the first step).
    pub fn dt(&self) -> f64 {
        self.dt
    }

    /// Whether `tend` or `nstepmax` has been reached.
    pub fn is_done(&self) -> bool {
        !(self.time < self.params.tend && self.step < self.params.nstepmax)
    }

    /// Everything needed to resume this run later.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            params: self.params.clone(),
            state: self.state.clone(),
            step: self.step,
            time: self.time,
            dt: self.dt,
        }
    }

    /// Advances one step: a new CFL step on even steps (halved on the first),
    /// then the x and y sweeps, x first on even steps and y first on odd ones.
    pub fn advance(&mut self) -> Result<(), SolverError> {
        let p = &self.params;
        if self.step % 2 == 0 {
            let dt = courant_dt(
                &self.state,
                &self.gas,
                p.courant_factor,
                p.dx,
                p.nxystep,
                &self.exec,
            );
            self.dt = if self.step == 0 { dt / 2.0 } else { dt };
        }
        if !(self.dt.is_finite() && self.dt > 0.0) {
            return Err(SolverError::BadTimeStep {
                step: self.step,
                dt: self.dt,
            });
        }
        let kernel = Kernel::new(
            self.gas,
            p.slope_type.factor(),
            p.niter_riemann,
            self.dt / p.dx,
        );
        let order = if self.step % 2 == 0 {
            [Direction::X, Direction::Y]
        } else {
            [Direction::Y, Direction::X]
        };
        for dir in order {
            fill_ghosts(&mut self.state, dir, p);
            sweep(
                &mut self.state,
                dir,
                &kernel,
                p.nxystep,
                &self.exec,
                &self.scratch,
            );
        }
        self.step += 1;
        self.time += self.dt;
        tracing::debug!(step = self.step, t = self.time, dt = self.dt, "step");
        self.report_output_point();
        Ok(())
    }

    /// Whether the last step ended at one of HydroC's output points (every
    /// `noutput` steps and every `dtoutput` of simulated time).
    pub fn output_due(&self) -> bool {
        self.output_due
    }

    /// Notes and logs the step at HydroC's output points.
    fn report_output_point(&mut self) {
        let by_step = self.params.noutput > 0 && self.step % self.params.noutput == 0;
        let by_time = self.time >= self.next_output_time;
        while self.time >= self.next_output_time {
            self.next_output_time += self.params.dtoutput;
        }
        self.output_due = by_step || by_time;
        if self.output_due {
            tracing::debug!(
                step = self.step,
                t = self.time,
                dt = self.dt,
                mass = self.state.total(ID),
                energy = self.state.total(IP),
                "output point"
            );
        }
    }

    /// Runs until `tend` or `nstepmax` is reached.
    pub fn run(&mut self) -> Result<RunSummary, SolverError> {
        let first = self.step;
        let start = Instant::now();
        while !self.is_done() {
            self.advance()?;
        }
        let wall_seconds = start.elapsed().as_secs_f64();
        let steps = self.step - first;
        let cells = (self.params.nx * self.params.ny) as f64;
        let summary = RunSummary {
            steps,
            total_steps: self.step,
            time: self.time,
            wall_seconds,
            mcells_per_second: cells * steps as f64 / wall_seconds / 1e6,
        };
        tracing::info!(?summary, "run finished");
        Ok(summary)
    }
}
