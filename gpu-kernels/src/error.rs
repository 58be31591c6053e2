//! The crate's error type.

use thiserror::Error;

/// Everything that can go wrong loading or running the kernels.
///
/// No function of the crate panics on bad input or on a missing GPU
/// library; each reports one of these.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KernelError {
    /// Neither the CUDA driver (libcuda) nor the HIP runtime (libamdhip64)
    /// can be loaded.
    #[error("no GPU driver library: {0}")]
    NoDriver(String),
    /// The run-time compiler (libnvrtc or libhiprtc) cannot be loaded.
    #[error("no run-time compiler library: {0}")]
    NoCompiler(String),
    /// The device ordinal does not name a device.
    #[error("no GPU device {ordinal} ({count} found)")]
    NoDevice {
        /// Ordinal asked for.
        ordinal: u32,
        /// Devices present.
        count: u32,
    },
    /// The kernel source did not compile; `log` is the compiler's log.
    #[error("kernel compilation for {arch} failed ({status}):\n{log}")]
    Compile {
        /// Target architecture (`sm_90`, or the HIP default).
        arch: String,
        /// Compiler status.
        status: String,
        /// Compiler log.
        log: String,
    },
    /// A driver or runtime call failed (module load, launch, memset...).
    #[error("{call} failed: {message}")]
    Driver {
        /// The API call.
        call: &'static str,
        /// The error it returned.
        message: String,
    },
    /// A layout, shape, record or buffer-length problem, as
    /// `mamba-transforms` reports it for the same copy on the CPU.
    #[error(transparent)]
    Layout(#[from] mamba_transforms::Error),
    /// A null device address, or one not aligned to the element it holds.
    #[error("device address {ptr:#x} is null or not aligned to {align} bytes")]
    BadAddress {
        /// The address.
        ptr: u64,
        /// Alignment required.
        align: u64,
    },
    /// A well-formed request the kernels do not cover.
    #[error("not supported by the GPU kernels: {0}")]
    Unsupported(String),
}
