//! # sirius: a proxy of the SIRIUS plane-wave DFT loop over mamba
//!
//! SIRIUS keeps its own memory pool and stages wave functions between host
//! and device around every iterative eigensolver call. This example runs
//! that loop on a model whose answers are exactly known, with mamba's
//! pools as the memory and a small device seam as the staging:
//!
//! | module | job |
//! |---|---|
//! | [`physics`] | plane waves in a cubic cell, a separable cosine potential, H(k) applied matrix-free, exact eigenvalues |
//! | [`solver`] | block Davidson, subspace problems through `faer` on pooled workspace |
//! | [`device`] | the device seam: apply on the CPU, or host -> device -> host in budget-sized chunks |
//! | [`link`] | the seam over mamba's GPU runtime: CUDA, or its `SimDevice` test double |
//! | [`memory`] | buffers from a mamba pool (or the heap, for comparison) |
//! | [`scf`] | the SCF loop and its report |
//! | [`counting`] | a per-thread counting global allocator |
//! | [`params`] | the command line |
//!
//! H(k) is the Kronecker sum of three (2·nmax+1)-square tridiagonal
//! matrices, so its eigenvalues are sums of theirs
//! ([`physics::exact_eigenvalues`]); the tests compare against them to
//! 1e-8 Ha. After the first SCF step the loop's thread makes no heap
//! allocation: every buffer comes from the pool, the solver's scratch is
//! taken and freed in LIFO order per call.
//!
//! ```
//! use clap::Parser;
//! let cli = sirius::Cli::parse_from([
//!     "sirius", "--nmax", "2", "--kpoints", "0,0,0", "--bands", "4",
//!     "--iterations", "2", "--device", "cpu",
//! ]);
//! let report = sirius::run_app(&cli)?;
//! assert!(report.max_error() < 1e-8);
//! # Ok::<(), sirius::AppError>(())
//! ```

pub mod counting;
pub mod device;
pub mod link;
pub mod memory;
pub mod params;
pub mod physics;
pub mod scf;
pub mod solver;

use std::sync::Arc;

pub use device::{DeviceError, DeviceKind, Offload};
pub use memory::{Memory, MemoryError};
pub use params::{Cli, KPoint, ParamError, Params};
pub use scf::{run, Report, ScfError};

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Bad command line.
    #[error(transparent)]
    Params(#[from] ParamError),
    /// mamba could not discover the node.
    #[error("mamba: {0}")]
    Mamba(#[from] mamba::Error),
    /// Pooled memory could not be set up.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// The device could not be set up.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// The loop failed.
    #[error(transparent)]
    Scf(#[from] ScfError),
}

/// Bytes of the chunks the pool takes from the system for `params`: twice
/// the largest buffer of the run rounded up to a power of two, at least
/// 1 MiB. Every buffer then fits in a chunk (no chunk is taken per large
/// buffer), and the pool's high-water mark follows the live bytes (at most
/// two chunks beyond twice the live peak, checked by the tests).
pub fn pool_chunk(params: &Params) -> usize {
    let largest = params
        .kpoints
        .iter()
        .map(|k| {
            let n = physics::side(k.nmax).pow(3);
            // The solver's basis: up to 4 blocks of bands and guard bands.
            n * 4 * scf::block(params.bands, n) * size_of::<faer::c64>()
        })
        .max()
        .unwrap_or(0);
    (2 * largest).next_power_of_two().max(1 << 20)
}

/// The offload `params` ask for, with device memory from `memory`.
///
/// `auto` is CUDA device 0 when it can be used, the CPU otherwise.
///
/// # Errors
/// [`DeviceError::NoGpu`] for `gpu` without a usable CUDA device;
/// [`DeviceError::Runtime`] when a runtime refuses its stream.
pub fn offload_for(params: &Params, memory: &Memory) -> Result<Offload, DeviceError> {
    let budget = params.device_budget;
    match params.device {
        DeviceKind::Cpu => Ok(Offload::cpu()),
        DeviceKind::Sim => Offload::sim(memory.clone(), budget),
        DeviceKind::Gpu => Offload::gpu(0, memory.clone(), budget),
        DeviceKind::Auto => match Offload::gpu(0, memory.clone(), budget) {
            Ok(gpu) => Ok(gpu),
            Err(DeviceError::NoGpu(why)) => {
                tracing::info!("no GPU ({why}): applying on the CPU");
                Ok(Offload::cpu())
            }
            Err(e) => Err(e),
        },
    }
}

/// Runs the command line: discovers the node, pools the highest-bandwidth
/// CPU-addressable space in chunks of [`pool_chunk`] bytes, runs the loop.
///
/// # Errors
/// [`AppError`].
pub fn run_app(cli: &Cli) -> Result<Report, AppError> {
    let params = Params::try_from(cli)?;
    let mamba = Arc::new(mamba::Mamba::discover(&mamba::Config {
        gpu: false,
        chunk_size: mamba::ByteSize(pool_chunk(&params)),
        ..mamba::Config::default()
    })?);
    let memory = Memory::pooled(mamba, &mamba::Policy::highest_bandwidth())?;
    let mut offload = offload_for(&params, &memory)?;
    Ok(scf::run(&params, &memory, &mut offload)?)
}
