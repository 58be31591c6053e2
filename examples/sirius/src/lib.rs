//! # sirius: a proxy of the SIRIUS plane-wave DFT loop over mamba
//!
//! SIRIUS keeps its own memory pool and stages wave functions between host
//! and device around every iterative eigensolver call. This example runs
//! that loop on a model whose answers are exactly known, with mamba's
//! pools as the memory, CDO hand-overs through an in-process pool as the
//! staging ([`stage`]: into a GPU space and back, or into the host's own
//! space without a copy on the CPU) and a small device seam for the H
//! applies:
//!
//! | module | job |
//! |---|---|
//! | [`physics`] | plane waves in a cubic cell, a separable cosine potential, H(k) applied matrix-free, exact eigenvalues |
//! | [`solver`] | block Davidson, subspace problems through `faer` on pooled workspace |
//! | [`device`] | the device seam: apply on the CPU, or host -> device -> host in budget-sized chunks |
//! | [`link`] | the seam over mamba's GPU runtime (CUDA, or its `SimDevice` test double), device slots from the GPU tier's pool |
//! | [`memory`] | buffers from a mamba pool (or the heap, for comparison) |
//! | [`stage`] | wave functions host -> device -> host around every eigensolver call, as CDOs |
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
pub mod stage;

use std::sync::Arc;

pub use device::{DeviceError, DeviceKind, Offload};
pub use memory::{Memory, MemoryError};
pub use params::{Cli, KPoint, ParamError, Params};
pub use scf::{run, Report, ScfError};
pub use stage::{CdoStage, CopyStage, Stage, StageError};

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
    /// The CDO pool could not be set up.
    #[error("CDO pool: {0}")]
    Cdo(#[from] cdo::Error),
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

/// The memory of a run: the allocator, the host space the buffers come
/// from, the device space the wave functions are staged into, and the
/// offload that applies H.
#[derive(Debug)]
pub struct Node {
    /// The allocator of every space.
    pub mamba: Arc<mamba::Mamba>,
    /// The solver's buffers (pooled in `host`).
    pub memory: Memory,
    /// The host space.
    pub host: mamba::SpaceId,
    /// The device space: `host` itself on the CPU.
    pub device: mamba::SpaceId,
    /// The test double behind `device` (`--device sim` only).
    pub sim: Option<mamba::gpu::SimDevice>,
    /// Where H is applied.
    pub offload: Offload,
}

/// Capacity of the simulated device's space: the test double's memory is
/// the process's.
const SIM_DEVICE_BYTES: usize = 16 << 30;

impl Node {
    /// The node `params` ask for:
    ///
    /// * `cpu`: the discovered node's highest-bandwidth host space, which
    ///   is also the device space (hand-overs copy nothing);
    /// * `sim`: a mamba assembled from a DRAM space and a GPU space of a
    ///   [`SimDevice`](mamba::gpu::SimDevice) (the test double); the
    ///   offload's device slots come from that space's pool, and the
    ///   double applies H in its stream order;
    /// * `gpu`: the discovered node with its CUDA spaces, device 0's GPU
    ///   space as the device space and the pool of the device slots;
    /// * `auto`: `gpu` when it can be used (a CUDA device that builds the
    ///   apply kernel), `cpu` otherwise.
    ///
    /// # Errors
    /// [`AppError::Mamba`] when the node cannot be discovered or
    /// assembled; [`AppError::Memory`] without a host space;
    /// [`DeviceError::NoGpu`] for `gpu` without a usable CUDA device.
    pub fn for_params(params: &Params) -> Result<Node, AppError> {
        match params.device {
            DeviceKind::Cpu => Self::cpu(params),
            DeviceKind::Sim => Self::sim(params),
            DeviceKind::Gpu => Self::gpu(params),
            DeviceKind::Auto => match Self::gpu(params) {
                Err(AppError::Device(DeviceError::NoGpu(why))) => {
                    tracing::info!("no GPU ({why}): applying on the CPU");
                    Self::cpu(params)
                }
                // A GPU whose kernel cannot be built (no NVRTC) is no
                // usable GPU either.
                Err(AppError::Device(DeviceError::Kernel(why))) => {
                    tracing::warn!(
                        "the GPU cannot run the apply kernel ({why}): applying on the CPU"
                    );
                    Self::cpu(params)
                }
                other => other,
            },
        }
    }

    fn cpu(params: &Params) -> Result<Node, AppError> {
        let mamba = Arc::new(mamba::Mamba::discover(&mamba::Config {
            gpu: false,
            chunk_size: mamba::ByteSize(pool_chunk(params)),
            ..mamba::Config::default()
        })?);
        let memory = Memory::pooled(mamba.clone(), &mamba::Policy::highest_bandwidth())?;
        let host = memory
            .pool()
            .map(|(_, s)| s)
            .ok_or_else(|| MemoryError::NotHostAccessible("no pooled space".into()))?;
        Ok(Node {
            mamba,
            memory,
            host,
            device: host,
            sim: None,
            offload: Offload::cpu(),
        })
    }

    fn sim(params: &Params) -> Result<Node, AppError> {
        let sim = mamba::gpu::SimDevice::new();
        let gpu = mamba::gpu::GpuDevice::new(Arc::new(sim.clone()));
        let settings = mamba::PoolSettings {
            chunk_size: pool_chunk(params),
            ..mamba::PoolSettings::default()
        };
        let space = |id: u32, tier: mamba::Tier, capacity: usize| mamba::SpaceInfo {
            id: mamba::SpaceId(id),
            name: format!("{tier}{id}"),
            tier,
            capacity,
            numa_node: None,
            device: (tier == mamba::Tier::Gpu).then_some(gpu.ordinal()),
            cpus: Vec::new(),
            bandwidth_mib_s: None,
            latency_ns: None,
            host_accessible: tier != mamba::Tier::Gpu,
            persistent: false,
            // The test double's memory is plain process memory.
            backing: mamba::Backing::Unbound,
        };
        let (host, device) = (mamba::SpaceId(0), mamba::SpaceId(1));
        let mamba = Arc::new(mamba::Mamba::from_pools(vec![
            mamba::Pool::new(
                space(host.0, mamba::Tier::Dram, usize::MAX / 4),
                Box::new(mamba::provider::NumaProvider::process_default()),
                settings,
            ),
            mamba::Pool::new(
                space(device.0, mamba::Tier::Gpu, SIM_DEVICE_BYTES),
                Box::new(mamba::gpu::RuntimeProvider::new(gpu, false)),
                settings,
            ),
        ])?);
        let memory = Memory::pooled(mamba.clone(), &mamba::Policy::require(host))?;
        let offload = Offload::in_sim_space(
            sim.clone(),
            Arc::clone(&mamba),
            device,
            memory.clone(),
            params.device_budget,
        )?;
        Ok(Node {
            mamba,
            memory,
            host,
            device,
            sim: Some(sim),
            offload,
        })
    }

    fn gpu(params: &Params) -> Result<Node, AppError> {
        let mamba = Arc::new(mamba::Mamba::discover(&mamba::Config {
            gpu: true,
            chunk_size: mamba::ByteSize(pool_chunk(params)),
            ..mamba::Config::default()
        })?);
        let device = mamba
            .spaces()
            .find(|s| s.tier == mamba::Tier::Gpu && s.device == Some(0))
            .map(|s| s.id)
            .ok_or_else(|| DeviceError::NoGpu("no GPU space of CUDA device 0".into()))?;
        let host = mamba
            .placement(&mamba::Policy::highest_bandwidth())?
            .spaces()
            .find(|s| s.host_accessible)
            .map(|s| s.id)
            .ok_or_else(|| MemoryError::NotHostAccessible("every space".into()))?;
        let memory = Memory::pooled(mamba.clone(), &mamba::Policy::require(host))?;
        // SAFETY: the GPU spaces of `Mamba::discover` with a device
        // runtime are CUDA devices' (HIP spaces have none); this is device
        // 0's.
        let offload = unsafe {
            Offload::in_cuda_space(
                Arc::clone(&mamba),
                device,
                0,
                memory.clone(),
                params.device_budget,
            )
        }?;
        Ok(Node {
            mamba,
            memory,
            host,
            device,
            sim: None,
            offload,
        })
    }
}

/// Runs the command line: sets up the [`Node`] its device asks for, an
/// in-process CDO pool over its allocator for the staging
/// ([`CdoStage`]), and runs the loop.
///
/// # Errors
/// [`AppError`].
pub fn run_app(cli: &Cli) -> Result<Report, AppError> {
    let params = Params::try_from(cli)?;
    let mut node = Node::for_params(&params)?;
    let pool = cdo::Pool::new(Arc::clone(&node.mamba), cdo::PoolConfig::default())?;
    let mut stage = CdoStage::new(&pool, node.host, node.device);
    Ok(scf::run(
        &params,
        &node.memory,
        &mut node.offload,
        &mut stage,
    )?)
}
