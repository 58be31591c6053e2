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
//!
//! Around the solver:
//!
//! | job | module |
//! |---|---|
//! | state, scratch and record buffers from mamba pools by policy | [`memory`] |
//! | the time loop with in-transit hand-off and timing | [`driver`] |
//! | output records in a ring of pooled buffers | [`record`] |
//! | the hand-off seam | [`outlet`] |
//! | statistics, rendering, VTK, checkpoint archiving on their own threads, fed by channels | [`analysis`] |
//! | the same analyses as consumers of a CDO pool on [`cdo::app`] (the default): threads in process, or processes through a pool manager (`--pool-manager`) | [`transit`] |
//! | checkpoints in the archive (SSD tier), restart from the newest | [`checkpoint_archive`] |
//! | progress bar or log lines, end-of-run summary | [`progress`], [`summary`] |
//! | Sedov's blast wave, the reference of the blast test cases | [`sedov`] |
//! | conservation and shock radius from the statistics, `stats.png` | [`physics`] |

pub mod analysis;
pub mod app;
pub mod binary;
pub mod boundary;
pub mod checkpoint;
pub mod checkpoint_archive;
pub mod cli;
pub mod driver;
pub mod dump;
pub mod eos;
pub mod exec;
pub mod flux;
pub mod init;
pub mod memory;
pub mod outlet;
pub mod params;
pub mod physics;
pub mod progress;
pub mod record;
pub mod riemann;
pub mod sedov;
pub mod slope;
pub mod solver;
pub mod state;
pub mod summary;
pub mod sweep;
pub mod timestep;
pub mod trace;
pub mod transit;

pub use app::{run_app, AppError};
pub use checkpoint::{Checkpoint, CheckpointError, CheckpointRef};
pub use cli::Cli;
pub use dump::{Dump, DumpError};
pub use exec::{BandExecutor, Executor, NumaBands, ScopedThreads};
pub use memory::{Buffer, Memory, MemoryError, MemoryPolicy};
pub use params::{Boundary, Limiter, ParamError, Params, TestCase};
pub use solver::{RunSummary, SetupError, Solver, SolverError};
pub use state::{Direction, State, GHOSTS, NVAR};
pub use summary::AppReport;
pub use transit::run_consumer;
