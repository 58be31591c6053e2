//! [`RuntimeProvider`]: a pool provider over any [`DeviceRuntime`].

use super::device::{DevicePtr, DeviceRuntime};
use super::gpu_device::GpuDevice;
use crate::error::Result;
use crate::provider::{gpu_granule, BlockIo, Chunk, Provider};
use std::ptr::NonNull;
use std::sync::Arc;

/// Device memory (`alloc_async` on the device's copy stream) or pinned host
/// memory of a [`GpuDevice`], as chunks for a [`Pool`](crate::Pool). With a
/// [`SimDevice`](super::SimDevice) it gives tests device spaces without a
/// GPU (through [`Mamba::from_pools`](crate::Mamba::from_pools)).
#[derive(Debug)]
pub struct RuntimeProvider {
    gpu: Arc<GpuDevice>,
    pinned_host: bool,
}

impl RuntimeProvider {
    /// A provider of `gpu`'s device memory, or of its pinned host memory
    /// when `pinned_host`.
    pub fn new(gpu: Arc<GpuDevice>, pinned_host: bool) -> Self {
        RuntimeProvider { gpu, pinned_host }
    }
}

impl Provider for RuntimeProvider {
    fn acquire(&self, len: usize) -> Result<Chunk> {
        let rt: &dyn DeviceRuntime = &**self.gpu.runtime();
        let addr = if self.pinned_host {
            rt.alloc_pinned(len)?.as_ptr() as usize
        } else {
            let ptr = rt.alloc_async(len, self.gpu.stream()?)?;
            // Pools hand chunks to any stream: the allocation must be done.
            self.gpu.finish()?;
            ptr.0 as usize
        };
        Ok(Chunk { addr, len })
    }

    unsafe fn release(&self, chunk: Chunk) {
        let rt = self.gpu.runtime();
        let freed = if self.pinned_host {
            match NonNull::new(chunk.addr as *mut u8) {
                // SAFETY: the caller gives back a chunk of `acquire`, once.
                Some(p) => unsafe { rt.free_pinned(p) },
                None => Ok(()),
            }
        } else {
            self.gpu.stream().and_then(|s| {
                // SAFETY: as above; every copy using it was enqueued on the
                // copy stream before.
                unsafe { rt.free_async(DevicePtr(chunk.addr as u64), s) }
            })
        };
        if let Err(e) = freed {
            tracing::error!(error = %e, "releasing a device chunk");
        }
    }

    fn granule(&self) -> usize {
        gpu_granule(self.pinned_host)
    }

    fn host_accessible(&self) -> bool {
        self.pinned_host
    }

    fn gpu(&self) -> Option<Arc<GpuDevice>> {
        Some(Arc::clone(&self.gpu))
    }

    /// Device memory is read and written through the device's copy stream.
    fn block_io(&self) -> Option<&dyn BlockIo> {
        (!self.pinned_host).then_some(&*self.gpu as &dyn BlockIo)
    }
}
