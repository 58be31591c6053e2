//! Providers: how raw memory is obtained in a space. A provider hands out
//! whole chunks and takes them back; it never pools (that is the job of
//! [`crate::pool`]).

mod cuda;
mod file;
mod hip;
mod near;
mod numa;
mod spill;

pub use cuda::{cuda_devices, CudaDevice, CudaProvider};
pub(crate) use file::allocate_file;
pub use file::FileProvider;
pub use hip::{hip_devices, HipDevice, HipProvider};
pub use near::NearNode;
pub use numa::NumaProvider;
pub use spill::SpillProvider;

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

    /// How the memory is reached, for display (`mamba tiers`); `None` for
    /// providers that do not say (the default).
    fn access(&self) -> Option<Access> {
        None
    }

    /// Reads and writes by address for memory the CPU cannot load but the
    /// provider can move bytes to and from (SSD spill files, GPU device
    /// memory); `None` for other memory (the default).
    fn block_io(&self) -> Option<&dyn BlockIo> {
        None
    }
}

/// Byte transfers to and from a provider's memory by address (an
/// allocation's address plus an offset).
pub trait BlockIo {
    /// Writes `bytes` at `addr`.
    ///
    /// # Errors
    /// [`Error::OutOfBounds`](crate::Error::OutOfBounds) outside the
    /// provider's chunks; the system's error.
    fn write_at(&self, addr: usize, bytes: &[u8]) -> Result<()>;

    /// Reads `buf.len()` bytes at `addr`.
    ///
    /// # Errors
    /// As [`BlockIo::write_at`].
    fn read_at(&self, addr: usize, buf: &mut [u8]) -> Result<()>;
}

/// How a provider's memory is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Access {
    /// Anonymous pages of the base page size.
    Anonymous,
    /// Anonymous memory advised for transparent huge pages
    /// (`MADV_HUGEPAGE`), large chunks 2 MiB aligned.
    TransparentHugePages,
    /// Reserved hugetlbfs pages (`MAP_HUGETLB`).
    HugeTlb {
        /// The page size.
        page_size: crate::hugepage::HugePageSize,
    },
    /// A shared file mapping served by the page cache.
    PageCache,
    /// Spill files moved by explicit reads and writes.
    Spill {
        /// Direct or buffered, and the engine.
        io: crate::spill::SpillIo,
    },
}

impl std::fmt::Display for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Access::Anonymous => f.write_str("anonymous"),
            Access::TransparentHugePages => f.write_str("THP"),
            Access::HugeTlb { page_size } => write!(f, "hugetlbfs {page_size}"),
            Access::PageCache => f.write_str("page cache"),
            Access::Spill { io } => write!(f, "{io}"),
        }
    }
}
