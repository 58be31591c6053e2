//! The SCF loop: per step, the potential ramps and every k-point's
//! eigensolver restarts from the previous step's wave functions.

use std::fmt;

use faer::c64;
use serde::Serialize;

use crate::counting::thread_allocations;
use crate::device::Offload;
use crate::memory::{Buf, Memory, MemoryError};
use crate::params::Params;
use crate::physics::{exact_eigenvalues, Hamiltonian, PhysicsError};
use crate::solver::{davidson, SolverError, SolverOptions};
use crate::stage::{Stage, StageError};

/// Why the loop stopped.
#[derive(Debug, thiserror::Error)]
pub enum ScfError {
    /// Wave functions or Hamiltonians could not be allocated.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// An eigensolver call failed.
    #[error("SCF step {step}, k-point {kpoint}: {source}")]
    Solver {
        /// 0-based SCF step.
        step: usize,
        /// 0-based k-point.
        kpoint: usize,
        /// The solver's error.
        source: SolverError,
    },
    /// The exact reference could not be computed.
    #[error(transparent)]
    Physics(#[from] PhysicsError),
    /// Wave functions could not be staged to or from the device side.
    #[error("SCF step {step:?}, k-point {kpoint}: {source}")]
    Stage {
        /// 0-based SCF step (`None`: while preparing).
        step: Option<usize>,
        /// 0-based k-point.
        kpoint: usize,
        /// The stage's error.
        source: StageError,
    },
}

/// One k-point's answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KPointReport {
    /// Fractional coordinates.
    pub k: [f64; 3],
    /// Cutoff.
    pub nmax: usize,
    /// The lowest eigenvalues of the last step (Hartree, ascending).
    pub eigenvalues: Vec<f64>,
    /// The exact ones (Kronecker sum of three 1D solves).
    pub exact: Vec<f64>,
    /// Largest residual norm of the last step.
    pub residual: f64,
    /// Davidson iterations of the last step.
    pub davidson_iterations: usize,
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Per k-point results.
    pub kpoints: Vec<KPointReport>,
    /// SCF steps.
    pub iterations: usize,
    /// Heap allocations of the loop's thread after the first SCF step
    /// (`null` without the counting allocator).
    pub raw_allocations_after_first_iteration: Option<u64>,
    /// High-water mark of the pool's reserved bytes (0 on the heap).
    pub pool_high_water_bytes: u64,
    /// Largest sum of live buffer bytes.
    pub live_bytes_peak: u64,
    /// Buffers taken from the memory (pool or heap allocations).
    pub buffers: u64,
    /// Bytes copied host -> device: the H applies' chunks and the
    /// staging of the wave functions.
    pub bytes_to_device: u64,
    /// Bytes copied device -> host: the same, the other way.
    pub bytes_from_device: u64,
    /// How the wave functions were staged around eigensolver calls.
    pub staging: String,
    /// Eigensolver calls staged.
    pub staged_calls: u64,
    /// Bytes the hand-overs of the blocks copied host -> device (part of
    /// `bytes_to_device`).
    pub handover_bytes_to_device: u64,
    /// Bytes the hand-overs of the results copied device -> host (part of
    /// `bytes_from_device`).
    pub handover_bytes_from_device: u64,
    /// Hand-overs that copied nothing (the device side in host memory).
    pub zero_copy_handovers: u64,
    /// Chunks applied (one per H-apply when the block is resident).
    pub device_chunks: u64,
    /// Where H was applied.
    pub device: String,
    /// Where the buffers lived.
    pub memory: String,
}

impl Report {
    /// Largest |computed − exact| over every k-point and band.
    pub fn max_error(&self) -> f64 {
        self.kpoints
            .iter()
            .flat_map(|k| {
                k.eigenvalues
                    .iter()
                    .zip(&k.exact)
                    .map(|(a, b)| (a - b).abs())
            })
            .fold(0.0, f64::max)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "sirius: {} SCF steps, H applied on {}",
            self.iterations, self.device
        )?;
        for k in &self.kpoints {
            writeln!(
                f,
                "k = ({:.4}, {:.4}, {:.4}) nmax {}: {} Davidson iterations, residual {:.1e}",
                k.k[0], k.k[1], k.k[2], k.nmax, k.davidson_iterations, k.residual
            )?;
            let e: Vec<String> = k.eigenvalues.iter().map(|e| format!("{e:.10}")).collect();
            writeln!(f, "  eigenvalues (Ha): {}", e.join(" "))?;
        }
        writeln!(
            f,
            "largest error against the exact values: {:.2e} Ha",
            self.max_error()
        )?;
        writeln!(
            f,
            "memory {}: {} buffers, live peak {} bytes, pool high water {} bytes",
            self.memory, self.buffers, self.live_bytes_peak, self.pool_high_water_bytes
        )?;
        writeln!(
            f,
            "device traffic: {} bytes in, {} bytes out, {} chunks",
            self.bytes_to_device, self.bytes_from_device, self.device_chunks
        )?;
        writeln!(
            f,
            "staging ({}): {} calls, hand-overs {} bytes in, {} bytes out, {} without a copy",
            self.staging,
            self.staged_calls,
            self.handover_bytes_to_device,
            self.handover_bytes_from_device,
            self.zero_copy_handovers
        )?;
        match self.raw_allocations_after_first_iteration {
            Some(n) => write!(f, "heap allocations after the first SCF step: {n}"),
            None => write!(f, "heap allocations not counted"),
        }
    }
}

/// Guard bands solved beside the wanted ones (at least; a quarter of the
/// bands when more), as plane-wave codes do.
const GUARD: usize = 2;

/// Wave functions per k-point for `bands` wanted bands and `n` plane
/// waves: the bands and their guard bands.
pub fn block(bands: usize, n: usize) -> usize {
    (bands + (bands / 4).max(GUARD)).min(n)
}

/// One k-point's state across steps.
struct State {
    h: Hamiltonian,
    psi: Buf<c64>,
    eigenvalues: Buf<f64>,
    residual: f64,
    iterations: usize,
}

/// Start vectors: plane waves at the `bands` lowest kinetic energies plus
/// a small deterministic pseudo-random admixture of every plane wave, so
/// that no symmetry sector of H is missing from the search space.
fn start(h: &Hamiltonian, psi: &mut [c64], bands: usize) {
    let d = h.diagonal();
    let mut order: Vec<usize> = (0..d.len()).collect();
    order.sort_by(|&i, &j| d[i].total_cmp(&d[j]).then(i.cmp(&j)));
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut noise = || {
        // splitmix64, mapped to [-1, 1).
        seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    };
    for x in psi.iter_mut() {
        *x = c64::new(noise(), noise()) * 1e-2;
    }
    for (b, &i) in order.iter().take(bands).enumerate() {
        psi[b * d.len() + i] += c64::new(1.0, 0.0);
    }
}

/// Runs the SCF loop of `params` with buffers from `memory`, H applied
/// through `offload` and each k-point's wave functions staged through
/// `stage` around every eigensolver call.
///
/// # Errors
/// [`ScfError`]: memory, eigensolver (no convergence, device), staging or
/// reference errors.
pub fn run(
    params: &Params,
    memory: &Memory,
    offload: &mut Offload,
    stage: &mut dyn Stage,
) -> Result<Report, ScfError> {
    let options = SolverOptions {
        tolerance: params.tolerance,
        ..SolverOptions::default()
    };
    let nb = params.bands;
    let mut states = Vec::with_capacity(params.kpoints.len());
    for k in &params.kpoints {
        let h = Hamiltonian::new(memory, params.a, k.kappa, k.nmax, [0.0; 3])?;
        let block = block(nb, h.dim());
        let mut psi = memory.buf::<c64>(h.dim() * block)?;
        start(&h, &mut psi, block);
        let eigenvalues = memory.buf::<f64>(block)?;
        stage
            .prepare(states.len(), psi.len())
            .map_err(|source| ScfError::Stage {
                step: None,
                kpoint: states.len(),
                source,
            })?;
        states.push(State {
            h,
            psi,
            eigenvalues,
            residual: 0.0,
            iterations: 0,
        });
    }
    let mut mark = None;
    for step in 0..params.iterations {
        let scale = (step + 1) as f64 / params.iterations as f64;
        for (kpoint, s) in states.iter_mut().enumerate() {
            s.h.set_potential(params.v.map(|v| v * scale));
            let staged = |source| ScfError::Stage {
                step: Some(step),
                kpoint,
                source,
            };
            // Host -> device side, and the solver's start from there.
            stage.stage_in(kpoint, &s.psi).map_err(staged)?;
            stage.load(kpoint, &mut s.psi).map_err(staged)?;
            let stats = davidson(
                &s.h,
                &mut s.psi,
                &mut s.eigenvalues,
                nb,
                &options,
                memory,
                offload,
            )
            .map_err(|source| ScfError::Solver {
                step,
                kpoint,
                source,
            })?;
            // The result to the device side, and back to the host.
            stage.store(kpoint, &s.psi).map_err(staged)?;
            stage.stage_out(kpoint, &mut s.psi).map_err(staged)?;
            s.residual = stats.residual;
            s.iterations = stats.iterations;
            tracing::debug!(step, kpoint, iterations = stats.iterations, "eigensolver");
        }
        if step == 0 {
            mark = thread_allocations();
        }
    }
    let raw = match (mark, thread_allocations()) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let traffic = offload.traffic();
    let staged = stage.traffic();
    let mut kpoints = Vec::with_capacity(states.len());
    for (k, s) in params.kpoints.iter().zip(&states) {
        kpoints.push(KPointReport {
            k: k.kappa,
            nmax: k.nmax,
            eigenvalues: s.eigenvalues[..nb].to_vec(),
            exact: exact_eigenvalues(params.a, k.kappa, k.nmax, params.v, nb)?,
            residual: s.residual,
            davidson_iterations: s.iterations,
        });
    }
    drop(states);
    Ok(Report {
        kpoints,
        iterations: params.iterations,
        raw_allocations_after_first_iteration: raw,
        pool_high_water_bytes: memory.high_water(),
        live_bytes_peak: memory.live_peak(),
        buffers: memory.buffers(),
        bytes_to_device: traffic.to_device + staged.to_device(),
        bytes_from_device: traffic.from_device + staged.from_device(),
        staging: stage.label(),
        staged_calls: staged.calls,
        handover_bytes_to_device: staged.handover_to_device,
        handover_bytes_from_device: staged.handover_from_device,
        zero_copy_handovers: staged.zero_copy_handovers,
        device_chunks: traffic.chunks,
        device: offload.label().into(),
        memory: memory.describe(),
    })
}
