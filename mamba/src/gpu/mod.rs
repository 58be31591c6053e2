//! The GPU data plane: a small device abstraction ([`DeviceRuntime`]) and
//! what is built on it.
//!
//! | item | job |
//! |---|---|
//! | [`DeviceRuntime`] | streams, events, stream-ordered copies and allocation, pinned host memory of one device |
//! | [`CudaRuntime`] | the CUDA driver implementation (libcuda loaded at run time) |
//! | [`SimDevice`] | an in-memory **test double**: never a GPU, never discovered |
//! | [`DevicePool`] | stream-ordered reuse of device memory: rounding, splitting, trimming on pressure, statistics |
//!
//! Device memory is only ever an address ([`DevicePtr`]): nothing here
//! hands out a reference to it. Without libcuda everything builds, and every
//! CUDA entry point returns [`Error::NoGpu`](crate::Error::NoGpu).
//!
//! The CUDA implementation never overwrites the caller's current context:
//! each call pushes the device's primary context (retained lazily, on first
//! use, once per device per process) and pops it before returning.

mod buffer;
mod cuda;
mod device;
mod gpu_device;
mod pool;
mod provider;
mod sim;
mod staging;
mod transfer;

pub use buffer::{DeviceBuffer, PinnedBuffer};
#[cfg(test)]
pub(crate) use cuda::driver_present;
pub use cuda::CudaRuntime;
pub(crate) use cuda::{gpu_err, init_driver, pci_bus_id, LazyContext};
pub use device::{DevicePtr, DeviceRuntime, EventId, StreamId};
pub use gpu_device::{cuda_gpu, DeviceConverter, GpuDevice};
pub use pool::{DevicePool, DevicePoolSettings, DevicePoolStats};
pub use provider::RuntimeProvider;
pub use sim::{SimDevice, SimStats};
pub use staging::{StagingConfig, StagingRing};
pub use transfer::Transfer;
