//! What the `hydro` binary does, as a library call.

use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::cli::Cli;
use crate::dump::{Dump, DumpError};
use crate::exec::ScopedThreads;
use crate::params::ParamError;
use crate::solver::{RunSummary, Solver, SolverError};

/// Any failure of a run.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Bad parameters.
    #[error(transparent)]
    Params(#[from] ParamError),
    /// A checkpoint could not be read or written.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The solution broke down.
    #[error(transparent)]
    Solver(#[from] SolverError),
    /// The final dump could not be written.
    #[error(transparent)]
    Dump(#[from] DumpError),
}

/// Runs the simulation the command line describes: a fresh run or a restart,
/// then the optional checkpoint and final dump.
pub fn run_app(cli: &Cli) -> Result<RunSummary, AppError> {
    let exec = ScopedThreads::new(cli.workers);
    let mut solver = match &cli.restart {
        Some(path) => {
            let mut checkpoint = Checkpoint::read(path)?;
            cli.apply(&mut checkpoint.params)?;
            Solver::from_checkpoint(checkpoint, exec)?
        }
        None => Solver::new(cli.params()?, exec)?,
    };
    let p = solver.params();
    tracing::info!(
        nx = p.nx,
        ny = p.ny,
        nxystep = p.nxystep,
        workers = cli.workers,
        step = solver.step_count(),
        "starting"
    );
    let summary = solver.run()?;
    if let Some(path) = &cli.checkpoint {
        solver.checkpoint().write(path)?;
    }
    if let Some(path) = &cli.dump_final {
        Dump::write(
            path,
            solver.state(),
            solver.params().dx,
            solver.step_count(),
            solver.time(),
        )?;
    }
    Ok(summary)
}
