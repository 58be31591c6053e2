//! The device seam: where the Hamiltonian is applied to a block of wave
//! functions.
//!
//! [`Offload::apply`] takes a host block `x` and returns `H x` in a host
//! block `y`. On the CPU ([`DeviceKind::Cpu`]) it applies in place. With a
//! device link it hands the block host -> device -> host: the block is cut
//! into chunks that fit the device budget, two device slots alternate, and
//! the upload of chunk `c + 1` is issued before the apply of chunk `c`, so
//! that a link whose apply runs on the device overlaps them.
//!
//! The links ([`crate::link`]) run on mamba's GPU data plane runtime:
//! [`DeviceKind::Gpu`] on CUDA, [`DeviceKind::Sim`] on its **test double**
//! `SimDevice` (never reported as a GPU). Both run the same chunking, slot
//! and stream logic and count the bytes moved. H is applied on the
//! device side in stream order, queued after the upload of the next chunk,
//! so that the upload of chunk `c + 1` overlaps the apply of chunk `c`: on
//! CUDA by a kernel compiled with NVRTC, bit-identical to the CPU apply; on
//! the double by a host function in its stream order.

use std::fmt;
use std::str::FromStr;

use faer::c64;

use crate::link::RuntimeLink;
use crate::memory::{Memory, MemoryError};
use crate::physics::Hamiltonian;

/// Why a device could not be set up or used.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The device budget cannot hold two slots of one vector each.
    #[error("device budget of {budget} bytes cannot hold two slots of one {vector_bytes}-byte vector in and out")]
    BudgetTooSmall {
        /// The budget.
        budget: u64,
        /// Bytes of one wave function.
        vector_bytes: u64,
    },
    /// `--device gpu` on a build or node without a usable CUDA device.
    #[error("no GPU: {0}")]
    NoGpu(String),
    /// Device memory could not be obtained.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// The device runtime refused a stream, an allocation or a copy.
    #[error("device runtime: {0}")]
    Runtime(mamba::Error),
    /// The CUDA apply kernel did not compile, load or launch.
    #[error("apply kernel: {0}")]
    Kernel(#[from] mamba_gpu_kernels::KernelError),
    /// A copy or apply outside the reserved slots.
    #[error("device slots not reserved for this chunk")]
    NotReserved,
}

/// The `--device` choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    /// A GPU when one is found, the CPU otherwise.
    Auto,
    /// Host memory, apply on the CPU.
    Cpu,
    /// The test double of a device (host memory behind the device seam).
    Sim,
    /// A CUDA GPU.
    Gpu,
}

impl FromStr for DeviceKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(DeviceKind::Auto),
            "cpu" => Ok(DeviceKind::Cpu),
            "sim" => Ok(DeviceKind::Sim),
            "gpu" => Ok(DeviceKind::Gpu),
            other => Err(format!("unknown device {other:?} (auto, cpu, sim, gpu)")),
        }
    }
}

impl fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeviceKind::Auto => "auto",
            DeviceKind::Cpu => "cpu",
            DeviceKind::Sim => {
                "sim (test double: mamba SimDevice copies, H applied in its stream order)"
            }
            DeviceKind::Gpu => "gpu (CUDA copies through mamba, H applied by a CUDA kernel)",
        })
    }
}

/// One device as the offload uses it: slots of device memory, copies
/// into and out of them, and the apply on a slot.
pub trait DeviceLink: Send {
    /// Makes two slots of `len` values each for inputs and outputs.
    ///
    /// # Errors
    /// Device memory errors.
    fn reserve(&mut self, len: usize) -> Result<(), DeviceError>;
    /// Copies `src` to the start of input slot `slot`.
    ///
    /// # Errors
    /// Copy errors.
    fn upload(&mut self, slot: usize, src: &[c64]) -> Result<(), DeviceError>;
    /// Applies `h` to the first `len` values of input slot `slot` into its
    /// output slot, after that slot's upload.
    ///
    /// # Errors
    /// Launch errors.
    fn apply(&mut self, slot: usize, h: &Hamiltonian, len: usize) -> Result<(), DeviceError>;
    /// Copies the start of output slot `slot` to `dst`, after its apply.
    ///
    /// # Errors
    /// Copy errors.
    fn download(&mut self, slot: usize, dst: &mut [c64]) -> Result<(), DeviceError>;
    /// Frees the slots.
    fn release(&mut self);
}

/// Bytes and calls through the device seam.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Bytes copied host -> device.
    pub to_device: u64,
    /// Bytes copied device -> host.
    pub from_device: u64,
    /// Chunks applied.
    pub chunks: u64,
    /// Calls of [`Offload::apply`].
    pub applies: u64,
}

/// Applies Hamiltonians on the CPU or through a [`DeviceLink`].
pub struct Offload {
    label: String,
    link: Option<Box<dyn DeviceLink>>,
    budget: Option<u64>,
    /// Values per slot reserved by [`Offload::reserve`] (0: none).
    reserved: usize,
    traffic: Traffic,
}

impl fmt::Debug for Offload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Offload")
            .field("label", &self.label)
            .field("budget", &self.budget)
            .field("traffic", &self.traffic)
            .finish()
    }
}

impl Offload {
    /// Apply on the CPU, on the caller's buffers.
    pub fn cpu() -> Offload {
        Offload {
            label: DeviceKind::Cpu.to_string(),
            link: None,
            budget: None,
            reserved: 0,
            traffic: Traffic::default(),
        }
    }

    /// Apply through `link`, holding at most `budget` bytes of device
    /// memory at a time (unlimited: each block is resident at once).
    pub fn linked(label: &str, link: Box<dyn DeviceLink>, budget: Option<u64>) -> Offload {
        Offload {
            label: label.into(),
            link: Some(link),
            budget,
            reserved: 0,
            traffic: Traffic::default(),
        }
    }

    /// A fresh test double ([`mamba::gpu::SimDevice`]), device slots from
    /// a device pool over it, host scratch from `memory`.
    ///
    /// # Errors
    /// [`DeviceError::Runtime`] when the double refuses a stream.
    pub fn sim(memory: Memory, budget: Option<u64>) -> Result<Offload, DeviceError> {
        Ok(Offload::linked(
            &DeviceKind::Sim.to_string(),
            Box::new(RuntimeLink::sim(memory)?),
            budget,
        ))
    }

    /// Device slots from GPU space `space` of `mamba` (the GPU tier's
    /// pool; the space the wave functions are staged into), copies on its
    /// device's runtime, H applied by the CUDA kernel
    /// ([`RuntimeLink::applying_with_cuda`]), host scratch from `memory`;
    /// labelled `gpu`.
    ///
    /// # Errors
    /// [`DeviceError::Runtime`] for a space without a GPU runtime or when
    /// no stream can be made; [`DeviceError::NoGpu`] without libcuda or
    /// that device; [`DeviceError::Kernel`] when the kernel does not
    /// compile or load.
    ///
    /// # Safety
    /// The space's runtime must be that of CUDA device `ordinal` (as the
    /// GPU spaces of [`mamba::Mamba::discover`] are).
    pub unsafe fn in_cuda_space(
        mamba: std::sync::Arc<mamba::Mamba>,
        space: mamba::SpaceId,
        ordinal: u32,
        memory: Memory,
        budget: Option<u64>,
    ) -> Result<Offload, DeviceError> {
        let link = RuntimeLink::in_space(mamba, space, memory)?;
        // SAFETY: the caller's contract.
        let link = unsafe { link.applying_with_cuda(ordinal) }?;
        Ok(Offload::linked(
            &DeviceKind::Gpu.to_string(),
            Box::new(link),
            budget,
        ))
    }

    /// As [`Offload::in_cuda_space`] for the GPU space of the test double
    /// `sim`, which also applies H in its stream order
    /// ([`RuntimeLink::applying_on`]); labelled `sim`.
    ///
    /// # Errors
    /// As [`Offload::in_cuda_space`], less the kernel's.
    pub fn in_sim_space(
        sim: mamba::gpu::SimDevice,
        mamba: std::sync::Arc<mamba::Mamba>,
        space: mamba::SpaceId,
        memory: Memory,
        budget: Option<u64>,
    ) -> Result<Offload, DeviceError> {
        Ok(Offload::linked(
            &DeviceKind::Sim.to_string(),
            Box::new(RuntimeLink::in_space(mamba, space, memory)?.applying_on(sim)),
            budget,
        ))
    }

    /// CUDA device `ordinal`, device slots from a device pool over it, H
    /// applied by the CUDA kernel, host scratch from `memory`.
    ///
    /// # Errors
    /// [`DeviceError::NoGpu`] without libcuda or that device;
    /// [`DeviceError::Kernel`] when the kernel does not compile or load.
    pub fn gpu(ordinal: u32, memory: Memory, budget: Option<u64>) -> Result<Offload, DeviceError> {
        Ok(Offload::linked(
            &DeviceKind::Gpu.to_string(),
            Box::new(RuntimeLink::cuda(ordinal, memory)?),
            budget,
        ))
    }

    /// What applies the Hamiltonian.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Bytes and calls so far.
    pub fn traffic(&self) -> Traffic {
        self.traffic
    }

    /// Vectors per chunk for blocks of `nvec` vectors of `n` values.
    ///
    /// # Errors
    /// [`DeviceError::BudgetTooSmall`].
    pub fn chunk_vectors(&self, n: usize, nvec: usize) -> Result<usize, DeviceError> {
        let vector_bytes = (n * size_of::<c64>()) as u64;
        match self.budget {
            None => Ok(nvec.max(1)),
            // Two slots, each an input and an output chunk.
            Some(budget) => match budget / (4 * vector_bytes.max(1)) {
                0 => Err(DeviceError::BudgetTooSmall {
                    budget,
                    vector_bytes,
                }),
                k => Ok((k as usize).min(nvec.max(1))),
            },
        }
    }

    /// `y = H x` for a block of vectors of `h.dim()` values each.
    ///
    /// # Errors
    /// [`DeviceError::BudgetTooSmall`]; the link's errors.
    pub fn apply(&mut self, h: &Hamiltonian, x: &[c64], y: &mut [c64]) -> Result<(), DeviceError> {
        self.traffic.applies += 1;
        let n = h.dim();
        let per_chunk = self.chunk_vectors(n, x.len() / n.max(1))?;
        let Some(link) = self.link.as_mut() else {
            h.apply(x, y);
            self.traffic.chunks += 1;
            return Ok(());
        };
        let len = per_chunk * n;
        let reserved = len <= self.reserved;
        if !reserved {
            link.reserve(len)?;
        }
        let result = pipeline(link.as_mut(), h, x, y, len, &mut self.traffic);
        if !reserved || result.is_err() {
            // Also waits for copies still pending after an error.
            link.release();
            if result.is_err() {
                self.reserved = 0;
            }
        }
        result
    }

    /// Reserves the device slots for blocks of up to `max_vectors`
    /// vectors of `n` values, for the applies until [`Offload::release`]
    /// (an eigensolver call): device memory is taken once per call, at
    /// one size, as SIRIUS does. Without a link it does nothing.
    ///
    /// # Errors
    /// [`DeviceError::BudgetTooSmall`]; the link's memory errors.
    pub fn reserve(&mut self, n: usize, max_vectors: usize) -> Result<(), DeviceError> {
        let per_chunk = self.chunk_vectors(n, max_vectors)?;
        if let Some(link) = self.link.as_mut() {
            link.reserve(per_chunk * n)?;
            self.reserved = per_chunk * n;
        }
        Ok(())
    }

    /// Frees the slots of [`Offload::reserve`].
    pub fn release(&mut self) {
        if let Some(link) = self.link.as_mut() {
            link.release();
        }
        self.reserved = 0;
    }
}

/// The chunk pipeline: upload chunk 0; then for each chunk, upload the
/// next one into the other slot, apply this one, download it.
fn pipeline(
    link: &mut dyn DeviceLink,
    h: &Hamiltonian,
    x: &[c64],
    y: &mut [c64],
    len: usize,
    traffic: &mut Traffic,
) -> Result<(), DeviceError> {
    let bytes = |v: &[c64]| size_of_val(v) as u64;
    let chunks = x.len().div_ceil(len);
    if chunks == 0 {
        return Ok(());
    }
    link.upload(0, &x[..len.min(x.len())])?;
    traffic.to_device += bytes(&x[..len.min(x.len())]);
    for c in 0..chunks {
        let here = c * len..((c + 1) * len).min(x.len());
        if c + 1 < chunks {
            let next = &x[(c + 1) * len..((c + 2) * len).min(x.len())];
            link.upload((c + 1) % 2, next)?;
            traffic.to_device += bytes(next);
        }
        link.apply(c % 2, h, here.len())?;
        link.download(c % 2, &mut y[here.clone()])?;
        traffic.from_device += bytes(&y[here]);
        traffic.chunks += 1;
    }
    Ok(())
}
