//! A 2D Euler solver for an ideal gas that follows the scheme of CEA's HydroC
//! proxy application, so that its results can be compared with it.
//!
//! The scheme is a dimensionally split Godunov method: each time step runs an
//! x sweep and a y sweep with the same `dt` (x first on even steps), and each
//! sweep converts to primitive variables, limits slopes, traces MUSCL-Hancock
//! half-step interface states, solves a two-shock approximate Riemann problem
//! at each interface and applies the flux differences.
//!
//! Work is cut into bands of `nxystep` rows (x sweep) or columns (y sweep)
//! that a [`BandExecutor`] runs in parallel; the result does not depend on the
//! number of bands or workers, bit for bit.

pub mod app;
pub mod binary;
pub mod boundary;
pub mod checkpoint;
pub mod cli;
pub mod dump;
pub mod eos;
pub mod exec;
pub mod flux;
pub mod init;
pub mod params;
pub mod riemann;
pub mod slope;
pub mod solver;
pub mod state;
pub mod sweep;
pub mod timestep;
pub mod trace;

pub use app::{run_app, AppError};
pub use checkpoint::{Checkpoint, CheckpointError};
pub use cli::Cli;
pub use dump::{Dump, DumpError};
pub use exec::{BandExecutor, ScopedThreads};
pub use params::{Boundary, Limiter, ParamError, Params, TestCase};
pub use solver::{RunSummary, Solver, SolverError};
pub use state::{Direction, State, GHOSTS, NVAR};
