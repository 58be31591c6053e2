//! Providers: how raw memory is obtained in a space. A provider hands out
//! whole chunks and takes them back; it never pools (that is the job of
//! [`crate::pool`]).

mod cuda;
mod file;
mod hip;
mod near;
mod numa;

pub use cuda::{cuda_devices, CudaDevice, CudaProvider};
pub use file::FileProvider;
pub use hip::{hip_devices, HipDevice, HipProvider};
pub use near::NearNode;
pub use numa::NumaProvider;

use crate::error::Result;
use crate::gpu::GpuDevice;
use std::fmt::Debug;
use std::sync::Arc;

/// A contiguous range obtained from a provider. For GPU device memory the
/// address is a device address, not a CPU pointer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    /// First byte.
    pub addr: usize,
    /// Length in bytes.
    pub len: usize,
}

/// Chunk granularity of GPU runtimes: the page for pinned host memory, 512
/// bytes (the runtimes' own alignment) for device memory.
pub(crate) fn gpu_granule(pinned_host: bool) -> usize {
    if pinned_host {
        crate::sys::page_size()
    } else {
        512
    }
}

/// A source of raw memory for one space.
pub trait Provider: Send + Sync + Debug {
    /// Obtains `len` bytes (a multiple of [`Provider::granule`]).
    fn acquire(&self, len: usize) -> Result<Chunk>;

    /// Gives a chunk back.
    ///
    /// # Safety
    /// `chunk` must come from this provider's [`Provider::acquire`], be given
    /// back once, and nothing may use its memory afterwards.
    unsafe fn release(&self, chunk: Chunk);

    /// The unit of sizes and alignment of chunks (the page size for host
    /// memory).
    fn granule(&self) -> usize;

    /// Whether the CPU can load and store the memory.
    fn host_accessible(&self) -> bool;

    /// Gives a page-aligned range of one of its chunks back to the provider's
    /// own placement (after its pages were moved elsewhere), moving the
    /// pages present when `migrate`. Nothing to do for providers that do
    /// not place pages (the default).
    ///
    /// # Errors
    /// The system's refusal.
    fn rebind(&self, addr: usize, len: usize, migrate: bool) -> Result<()> {
        let _ = (addr, len, migrate);
        Ok(())
    }

    /// The GPU whose memory this is (device memory), or that reads and
    /// writes it by DMA without staging (pinned host memory); `None` for
    /// other memory (the default). The copy engine routes by it.
    fn gpu(&self) -> Option<Arc<GpuDevice>> {
        None
    }
}
