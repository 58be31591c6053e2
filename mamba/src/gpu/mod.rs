//! The GPU data plane: a small device abstraction ([`DeviceRuntime`]) and
//! what the copy engine builds on it.
//!
//! | item | job |
//! |---|---|
//! | [`DeviceRuntime`] | streams, events, stream-ordered copies and allocation, pinned host memory of one device |
//! | [`CudaRuntime`] | the CUDA driver implementation (libcuda loaded at run time) |
//! | [`SimDevice`] | an in-memory **test double**: never a GPU, never discovered, never shown by `mamba tiers` |
//! | [`DevicePool`] | stream-ordered reuse of device memory: rounding, splitting, trimming on pressure, statistics |
//! | [`GpuDevice`] | one device as the copy engine uses it: a copy stream, a staging ring (pageable host memory to and from the device through double-buffered pinned slots, shaped by [`StagingConfig`]), the [`DeviceConverter`] seam (the `mamba-gpu-kernels` layout kernels on CUDA devices) |
//! | [`Transfer`] | completion handle of an asynchronous copy: poll, wait, `then_on` a stream, `then` a follow-up copy |
//! | [`DeviceBuffer`], [`PinnedBuffer`] | owned device and pinned host memory with checked copies |
//! | [`RuntimeProvider`] | pool chunks over any runtime (device spaces of a [`SimDevice`] in tests) |
//! | [`BlockIo`](crate::provider::BlockIo) for [`GpuDevice`] | reads and writes of device memory by address: an allocation's `read_bytes`/`write_bytes` in device spaces, and the tiering's moves of movable data to and from them |
//!
//! Arrays in GPU spaces ([`Mamba::array`](crate::Mamba::array) with a
//! GPU policy) are copied, tiled and migrated by [`crate::copy`], which
//! finds the [`GpuDevice`] of a space through its provider
//! ([`Provider::gpu`](crate::provider::Provider::gpu)); CUDA spaces share
//! one process-wide [`GpuDevice`] per device ([`cuda_gpu`]).
//!
//! Device memory is only ever an address ([`DevicePtr`]): nothing here
//! hands out a reference to it. Without libcuda everything builds, and every
//! CUDA entry point returns [`Error::NoGpu`](crate::Error::NoGpu).
//!
//! The CUDA implementation never overwrites the caller's current context:
//! each call pushes the device's primary context (retained lazily, on first
//! use, once per device per process, released with its last user) and pops
//! it before returning. Discovery retains no context.
//!
//! Tests: the staging, ordering and routing logic runs against
//! [`SimDevice`] everywhere; `cargo test -p mamba --test gpu` runs the same
//! paths on a real CUDA device (each test prints `skipped: ...` without
//! one), and `cargo run --release -p mamba-benches --bin compare -- gpu`
//! measures them.

mod block_io;
mod buffer;
mod cuda;
mod device;
mod gpu_device;
mod kernels;
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
pub use sim::{HostKernel, SimDevice, SimMemory, SimStats};
pub use staging::StagingConfig;
pub use transfer::Transfer;
