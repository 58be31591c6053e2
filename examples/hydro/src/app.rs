//! What the `hydro` binary does, as a library call.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mamba::{Config, Mamba, Policy};

use crate::analysis::{AnalysisOptions, ChannelOutlet};
use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::checkpoint_archive::{archive_dir, newest};
use crate::cli::Cli;
use crate::cli::{ExecutorKind, TransportKind};
use crate::driver::{drive, DriveError, Transit};
use crate::dump::{Dump, DumpError};
use crate::exec::{Executor, NumaBands, ScopedThreads};
use crate::memory::{Memory, MemoryError};
use crate::outlet::{Outlet, OutletError};
use crate::params::ParamError;
use crate::physics::{Physics, SUMMARY_TXT};
use crate::progress::Progress;
use crate::record::RecordRing;
use crate::solver::{SetupError, Solver};
use crate::summary::{AppReport, MemoryReport};
use crate::transit::{in_process_pool, pool_manager, TransitOutlet};
use mamba::affinity::{AffinityError, Locality};

/// Any failure of a run.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Bad parameters.
    #[error(transparent)]
    Params(#[from] ParamError),
    /// The run could not be set up.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// mamba could not be configured or could not discover the node.
    #[error("mamba: {0}")]
    Mamba(#[from] mamba::Error),
    /// The requested memory is not available.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// A checkpoint could not be read or written.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// There is no checkpoint to restart from.
    #[error("no checkpoint to restart from in {0}")]
    NoCheckpoint(PathBuf),
    /// The time loop or the analyses failed.
    #[error(transparent)]
    Drive(#[from] DriveError),
    /// The worker pool could not start.
    #[error("worker pool: {0}")]
    Affinity(#[from] AffinityError),
    /// The analyses could not start.
    #[error(transparent)]
    Outlet(#[from] OutletError),
    /// The CDO transport needs memory from mamba.
    #[error("the CDO transport needs pooled memory")]
    NoPool,
    /// The final dump could not be written.
    #[error(transparent)]
    Dump(#[from] DumpError),
    /// The statistics could not be read, or the plot or the summary could
    /// not be written.
    #[error("end-of-run report in {path}: {source}")]
    Report {
        /// The output directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// mamba's configuration as the command line gives it.
fn mamba_config(cli: &Cli) -> Result<Config, AppError> {
    let mut config = match &cli.mamba_config {
        Some(path) => Config::from_file(path)?,
        None => Config::from_env()?,
    };
    if let Some(path) = &cli.topology {
        config.topology = Some(path.clone());
    }
    Ok(config)
}

/// mamba on the configured node, with the `--memory` policy.
fn open_memory(cli: &Cli, config: &Config) -> Result<Memory, AppError> {
    let mamba = Arc::new(Mamba::discover(config)?);
    Ok(Memory::pooled(mamba, cli.memory.0.clone())?)
}

/// The band executor `--executor` names, over the configured node: the
/// topology the allocator loaded, else (memory on the heap) loaded here.
fn executor(cli: &Cli, config: &Config, memory: &Memory) -> Result<Executor, AppError> {
    let workers = cli.worker_count();
    Ok(match cli.executor {
        ExecutorKind::Numa => {
            let locality = match memory.mamba().and_then(Mamba::locality) {
                Some(shared) => shared.clone(),
                None => Locality::load(config)?,
            };
            Executor::Numa(NumaBands::new(&locality, workers)?)
        }
        ExecutorKind::Threads => Executor::Threads(ScopedThreads::new(workers)),
    })
}

/// The checkpoint `--restart` names and where it is: a checkpoint file, the
/// newest in an archive directory, or the newest in `archive`.
fn checkpoint_to_resume(
    named: Option<&Path>,
    archive: &Path,
) -> Result<(Checkpoint, PathBuf), AppError> {
    let dir = match named {
        Some(path) if !path.is_dir() => return Ok((Checkpoint::read(path)?, path.into())),
        Some(dir) => dir,
        None => archive,
    };
    let no_checkpoint = || AppError::NoCheckpoint(dir.into());
    if !dir.is_dir() {
        return Err(no_checkpoint());
    }
    let archive = cdo::archive::Archive::open(dir).map_err(CheckpointError::from)?;
    let (path, checkpoint) = newest(&archive)?.ok_or_else(no_checkpoint)?;
    Ok((checkpoint, path))
}

/// Runs the simulation the command line describes: a fresh run or a restart
/// with the analyses in transit, then the optional final checkpoint and
/// dump.
pub fn run_app(cli: &Cli) -> Result<AppReport, AppError> {
    let config = mamba_config(cli)?;
    let memory = open_memory(cli, &config)?;
    let workers = cli.worker_count();
    let exec = executor(cli, &config, &memory)?;
    let archive = (cli.restart.is_some() || cli.checkpoint_every > 0)
        .then(|| archive_dir(cli.archive.as_deref(), memory.mamba(), &cli.output));
    let (mut solver, restarted_from) = match (&cli.restart, &archive) {
        (Some(named), Some(archive)) => {
            let (mut checkpoint, path) = checkpoint_to_resume(named.as_deref(), archive)?;
            cli.apply(&mut checkpoint.params)?;
            let solver = Solver::from_checkpoint_in(checkpoint, exec, &memory)?;
            (solver, Some(path))
        }
        _ => (Solver::new_in(cli.params()?, exec, &memory)?, None),
    };
    let p = solver.params().clone();
    let mut report = MemoryReport::default();
    let space_of = |s: Option<&mamba::SpaceInfo>| s.map(|s| (s.name.clone(), s.tier));
    report.state = space_of(solver.state().space());
    tracing::info!(
        nx = p.nx,
        ny = p.ny,
        nxystep = p.nxystep,
        workers,
        step = solver.step_count(),
        memory = %memory.describe(),
        state = report.state.as_ref().map_or("heap", |s| s.0.as_str()),
        "starting"
    );
    let analyses = !cli.no_analyses;
    let in_transit = analyses || cli.checkpoint_every > 0;
    let options = AnalysisOptions {
        dir: cli.output.clone(),
        renderers: cli.renderers,
        vtk: cli.vtk,
        analyses,
        resume_after: restarted_from.as_ref().map(|_| solver.step_count()),
        archive: archive.filter(|_| cli.checkpoint_every > 0),
    };
    // The pool outlives the outlet that borrows it.
    let pool;
    let outlet: Option<Box<dyn Outlet>> = match (in_transit, cli.transport) {
        (false, _) => None,
        (true, TransportKind::Channels) if !cli.pool_manager => {
            let ring = RecordRing::new(p.nx, p.ny, cli.ring, 0, &memory)?;
            report.records = space_of(ring.space().as_ref());
            Some(Box::new(ChannelOutlet::start(&options, ring)?))
        }
        (true, _) => {
            // The deployment: the only thing `--pool-manager` changes.
            let placement = memory.placement();
            pool = Arc::new(match placement {
                _ if cli.pool_manager => pool_manager()?,
                Some((mamba, policy)) => {
                    report.records = mamba
                        .placement(policy)?
                        .spaces()
                        .next()
                        .map(|s| (s.name.clone(), s.tier));
                    in_process_pool(Arc::clone(mamba), policy)?
                }
                None => return Err(AppError::NoPool),
            });
            let policy = placement.map_or_else(Policy::highest_bandwidth, |(_, p)| p.clone());
            let timeout = Duration::from_secs(cli.consumer_timeout);
            let agents = &cli.consumer_agent;
            let outlet = TransitOutlet::start(&pool, policy, &options, cli.ring, timeout, agents)?;
            Some(Box::new(outlet))
        }
    };
    let transit = outlet.map(|outlet| Transit {
        outlet,
        checkpoint_every: cli.checkpoint_every,
        records: analyses,
    });
    let mut progress = Progress::new(p.nstepmax, p.tend);
    let drive_report = drive(&mut solver, transit, &mut progress)?;
    if let Some(path) = &cli.checkpoint {
        solver.checkpoint().write(path)?;
    }
    if let Some(path) = &cli.dump_final {
        Dump::write(
            path,
            solver.state(),
            p.dx,
            solver.step_count(),
            solver.time(),
        )?;
    }
    let memory_report = MemoryReport {
        state: report.state,
        records: report.records,
        ..MemoryReport::new(&memory)
    };
    let report_error = |source| AppError::Report {
        path: cli.output.clone(),
        source,
    };
    let physics = if analyses {
        Physics::report(&cli.output, &p).map_err(report_error)?
    } else {
        None
    };
    let app_report = AppReport {
        steps: drive_report.steps,
        total_steps: solver.step_count(),
        time: solver.time(),
        cells: p.nx * p.ny,
        transport: in_transit.then_some(cli.transport),
        restarted_from,
        drive: drive_report,
        memory: memory_report,
        physics,
        output: analyses.then(|| cli.output.clone()),
    };
    if analyses {
        std::fs::write(cli.output.join(SUMMARY_TXT), app_report.to_string())
            .map_err(report_error)?;
    }
    Ok(app_report)
}
