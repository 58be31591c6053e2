//! Command-line interface: an optional HydroC input file, overridden by flags.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// What runs the bands of work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExecutorKind {
    /// mamba's NUMA-aware worker pool.
    Numa,
    /// Plain scoped threads.
    Threads,
}

/// How records reach the in-transit analyses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TransportKind {
    /// A CDO pool: records are CDOs in the pool's memory, the analyses
    /// consumer groups that read them without copying (in process, or in a
    /// pool manager with `--pool-manager`).
    Cdo,
    /// crossbeam channels from a ring of record buffers.
    Channels,
}

use crate::memory::MemoryPolicy;
use crate::params::{Boundary, Limiter, ParamError, Params, TestCase};

/// 2D hydrodynamics with HydroC's scheme.
#[derive(Debug, Clone, Parser)]
#[command(name = "hydro", version, about)]
pub struct Cli {
    /// HydroC-style input file of key=value lines.
    #[arg(short = 'i', long = "input")]
    pub input: Option<PathBuf>,
    /// Interior cells along x.
    #[arg(long)]
    pub nx: Option<usize>,
    /// Interior cells along y.
    #[arg(long)]
    pub ny: Option<usize>,
    /// Cell size.
    #[arg(long)]
    pub dx: Option<f64>,
    /// End time.
    #[arg(long)]
    pub tend: Option<f64>,
    /// Maximum number of steps.
    #[arg(long)]
    pub nstepmax: Option<u64>,
    /// CFL number.
    #[arg(long)]
    pub courant_factor: Option<f64>,
    /// Maximum Newton iterations of the Riemann solver.
    #[arg(long)]
    pub niter_riemann: Option<u32>,
    /// Slope limiter: 1 (minmod) or 2 (monotonized central).
    #[arg(long)]
    pub slope_type: Option<Limiter>,
    /// Boundary at x = 0: 1 reflexive, 2 absorbing, 3 periodic.
    #[arg(long)]
    pub boundary_left: Option<Boundary>,
    /// Boundary at x = nx dx.
    #[arg(long)]
    pub boundary_right: Option<Boundary>,
    /// Boundary at y = 0.
    #[arg(long)]
    pub boundary_down: Option<Boundary>,
    /// Boundary at y = ny dx.
    #[arg(long)]
    pub boundary_up: Option<Boundary>,
    /// Initial condition: 0 (centred point blast), 1 (corner blast), 2 (plane
    /// blast from the left wall) or sod.
    #[arg(long)]
    pub testcase: Option<TestCase>,
    /// Simulated time between output points.
    #[arg(long)]
    pub dtoutput: Option<f64>,
    /// Steps between output points.
    #[arg(long)]
    pub noutput: Option<u64>,
    /// Rows or columns per band of work.
    #[arg(long)]
    pub nxystep: Option<usize>,
    /// Worker threads (0: one per available core).
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
    /// What runs the bands: mamba's NUMA-aware pool (pinned workers, one
    /// group per NUMA domain) or plain threads.
    #[arg(long, value_enum, default_value_t = ExecutorKind::Numa)]
    pub executor: ExecutorKind,
    /// Resume from a checkpoint (its parameters, overridden by the input
    /// file and the flags): this checkpoint file (`--checkpoint`), the
    /// newest checkpoint in this archive directory, or without a value the
    /// newest in the archive (`--archive`).
    #[arg(long, num_args = 0..=1, value_name = "PATH")]
    pub restart: Option<Option<PathBuf>>,
    /// Where the state, the scratch and the record buffers go: tiers in
    /// order of preference (`hbm,dram`), or `bandwidth`, `latency`,
    /// `capacity` for the best space by that attribute.
    #[arg(long, default_value = "bandwidth", value_name = "POLICY")]
    pub memory: MemoryPolicy,
    /// hwloc XML file describing the node, for mamba (instead of this
    /// machine).
    #[arg(long, value_name = "FILE")]
    pub topology: Option<PathBuf>,
    /// mamba configuration file (TOML); default: `MAMBA_*` variables.
    #[arg(long, value_name = "FILE")]
    pub mamba_config: Option<PathBuf>,
    /// Directory of the analyses' files.
    #[arg(long, default_value = "hydro-out", value_name = "DIR")]
    pub output: PathBuf,
    /// How records reach the in-transit analyses: a CDO pool (consumer
    /// groups, zero-copy) or crossbeam channels.
    #[arg(long, value_enum, default_value_t = TransportKind::Cdo)]
    pub transport: TransportKind,
    /// Run without the in-transit analyses.
    #[arg(long)]
    pub no_analyses: bool,
    /// Members of the renderer group (at least 1); records go to them
    /// round-robin, each to exactly one.
    #[arg(long, default_value_t = 1)]
    pub renderers: usize,
    /// Also write every output record as a legacy VTK file.
    #[arg(long)]
    pub vtk: bool,
    /// Archive a checkpoint every this many steps (0: never).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub checkpoint_every: u64,
    /// Archive directory of the checkpoints; default: `hydro-archive` in
    /// mamba's first SSD directory (`MAMBA_SSD`, the mamba configuration),
    /// else `archive` in the output directory.
    #[arg(long, value_name = "DIR")]
    pub archive: Option<PathBuf>,
    /// Records in flight between the solver and the analyses (at least 2):
    /// ring buffers (channels) or offered CDOs (cdo); the solver waits
    /// when they are all in use.
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub ring: usize,
    /// Input text applied before the input file when none is given (the
    /// binary's built-in main job).
    #[arg(skip)]
    pub base_input: Option<&'static str>,
    /// Write a checkpoint here at the end of the run.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Write the final state here (JSON header line, then f64 planes).
    #[arg(long)]
    pub dump_final: Option<PathBuf>,
    /// Put the CDO pool in a pool manager (started here unless
    /// `CDO_POOL_SOCKET` names one) instead of this process (implies
    /// `--transport cdo`): the analyses and the checkpoint archiver then
    /// run as separate processes joined to it instead of threads, the same
    /// code otherwise.
    #[arg(long)]
    pub pool_manager: bool,
    /// With `--pool-manager`: start the consumer processes of `ROLE`
    /// (`stats`, `render` or `archive`) through `COMMAND`, words split at
    /// white space, followed by this binary and its arguments (e.g.
    /// `render=ip netns exec node2 env CDO_POOL_SOCKET=/run/pm.sock`, or
    /// `srun` with its options): they may run on another node, joined to
    /// that node's pool manager, federated with this one's. Repeatable.
    #[arg(long, value_name = "ROLE=COMMAND", value_parser = parse_agent)]
    pub consumer_agent: Vec<ConsumerAgent>,
    /// Seconds the solver and a consumer of the CDO transport (thread or
    /// `--pool-manager` process) wait for one another before failing (the
    /// consumers wait for the next record as long as the solver lives).
    #[arg(long, default_value_t = 60, value_name = "S",
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub consumer_timeout: u64,
    /// Internal: run as this consumer process of a `--pool-manager` run.
    #[arg(long, value_enum, hide = true)]
    pub consumer: Option<ConsumerRole>,
    /// Internal: this renderer's index among `--renderers`.
    #[arg(long, default_value_t = 0, hide = true)]
    pub member: usize,
    /// Internal: keep the statistics of an earlier run up to this step.
    #[arg(long, hide = true)]
    pub resume_after: Option<u64>,
}

/// How the consumer processes of one role start (`--consumer-agent`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerAgent {
    /// The role.
    pub role: ConsumerRole,
    /// The command, then its arguments, that run the consumer process
    /// (this binary and its arguments follow them).
    pub command: Vec<String>,
}

/// Parses `ROLE=COMMAND` for `--consumer-agent`.
fn parse_agent(text: &str) -> Result<ConsumerAgent, String> {
    let (role, command) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: expected ROLE=COMMAND"))?;
    let role = ConsumerRole::from_str(role.trim(), true)
        .map_err(|_| format!("{role:?}: expected stats, render or archive"))?;
    let command: Vec<String> = command.split_whitespace().map(String::from).collect();
    if command.is_empty() {
        return Err(format!("{text:?}: no command"));
    }
    Ok(ConsumerAgent { role, command })
}

/// What a consumer process of a `--pool-manager` run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ConsumerRole {
    /// The statistics consumer (every record).
    Stats,
    /// A renderer (its share of the records).
    Render,
    /// The checkpoint archiver (every checkpoint, into `--archive`).
    Archive,
}

impl Cli {
    /// The number of solver workers: `--workers`, or one per available core.
    pub fn worker_count(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    /// Applies the input file, then the flags, on top of `params`, and
    /// validates the result. Each HydroC key the file has that this solver
    /// skips is logged as a warning.
    pub fn apply(&self, params: &mut Params) -> Result<(), ParamError> {
        if let Some(path) = &self.input {
            for warning in params.apply_file(path)? {
                tracing::warn!("{}: {warning}", path.display());
            }
        }
        fn set<T: Copy>(slot: &mut T, flag: Option<T>) {
            if let Some(v) = flag {
                *slot = v;
            }
        }
        set(&mut params.nx, self.nx);
        set(&mut params.ny, self.ny);
        set(&mut params.dx, self.dx);
        set(&mut params.tend, self.tend);
        set(&mut params.nstepmax, self.nstepmax);
        set(&mut params.courant_factor, self.courant_factor);
        set(&mut params.niter_riemann, self.niter_riemann);
        set(&mut params.slope_type, self.slope_type);
        set(&mut params.boundary_left, self.boundary_left);
        set(&mut params.boundary_right, self.boundary_right);
        set(&mut params.boundary_down, self.boundary_down);
        set(&mut params.boundary_up, self.boundary_up);
        set(&mut params.testcase, self.testcase);
        set(&mut params.dtoutput, self.dtoutput);
        set(&mut params.noutput, self.noutput);
        set(&mut params.nxystep, self.nxystep);
        params.validate()
    }

    /// The parameters of a fresh run: defaults, then the built-in input when
    /// no file is given, then the file, then flags.
    pub fn params(&self) -> Result<Params, ParamError> {
        let mut params = Params::default();
        if let (None, Some(text)) = (&self.input, self.base_input) {
            params.apply_input(text)?;
        }
        self.apply(&mut params)?;
        Ok(params)
    }
}
