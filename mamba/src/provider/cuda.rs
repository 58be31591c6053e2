//! CUDA device memory and page-locked host memory through the driver API
//! (cudarc, loaded at run time: the crate builds and runs without CUDA).

use super::{BlockIo, Chunk, Provider};
use crate::error::Result;
use crate::gpu::{cuda_gpu, gpu_err, init_driver, pci_bus_id, GpuDevice, LazyContext};
use cudarc::driver::{result, sys};
use std::sync::Arc;

/// A CUDA device found at discovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CudaDevice {
    /// Device ordinal.
    pub ordinal: u32,
    /// Marketing name.
    pub name: String,
    /// Total device memory in bytes.
    pub total_memory: usize,
    /// PCI bus id, as `cuDeviceGetPCIBusId` writes it ("0000:00:06.0").
    pub pci_bus_id: String,
}

/// Lists CUDA devices, or explains why there are none. Retains no
/// context.
pub fn cuda_devices() -> Result<Vec<CudaDevice>> {
    init_driver()?;
    let count = result::device::get_count().map_err(gpu_err("cuDeviceGetCount"))?;
    (0..count)
        .map(|ordinal| {
            let dev = result::device::get(ordinal).map_err(gpu_err("cuDeviceGet"))?;
            // SAFETY: `dev` was returned by cuDeviceGet.
            let total_memory =
                unsafe { result::device::total_mem(dev) }.map_err(gpu_err("cuDeviceTotalMem"))?;
            Ok(CudaDevice {
                ordinal: ordinal as u32,
                name: result::device::get_name(dev).map_err(gpu_err("cuDeviceGetName"))?,
                total_memory,
                pci_bus_id: pci_bus_id(dev)?,
            })
        })
        .collect()
}

/// Device memory (`cuMemAlloc`) or page-locked host memory
/// (`cuMemHostAlloc`) of one device, allocated in its primary context.
/// The context is retained on the first allocation (not by
/// [`CudaProvider::new`]) and pushed around each driver call, so the
/// caller's current context is left as it was.
#[derive(Debug)]
pub struct CudaProvider {
    device: u32,
    pinned_host: bool,
    context: LazyContext,
    gpu: Arc<GpuDevice>,
}

impl CudaProvider {
    /// A provider for device `ordinal`; `pinned_host` selects page-locked
    /// host memory instead of device memory.
    ///
    /// # Errors
    /// [`Error::NoGpu`](crate::Error::NoGpu) without libcuda or without that device.
    pub fn new(ordinal: u32, pinned_host: bool) -> Result<Self> {
        Ok(CudaProvider {
            device: ordinal,
            pinned_host,
            context: LazyContext::new(ordinal),
            gpu: cuda_gpu(ordinal)?,
        })
    }
}

impl Provider for CudaProvider {
    fn acquire(&self, len: usize) -> Result<Chunk> {
        let _ctx = self.context.enter()?;
        let addr = if self.pinned_host {
            // SAFETY: plain allocation in the current context.
            unsafe { result::malloc_host(len, sys::CU_MEMHOSTALLOC_PORTABLE) }
                .map_err(gpu_err("cuMemHostAlloc"))? as usize
        } else {
            // SAFETY: plain allocation in the current context.
            unsafe { result::malloc_sync(len) }.map_err(gpu_err("cuMemAlloc"))? as usize
        };
        Ok(Chunk { addr, len })
    }

    unsafe fn release(&self, chunk: Chunk) {
        let Ok(_ctx) = self.context.enter() else {
            tracing::error!(device = self.device, "no context to free a CUDA chunk in");
            return;
        };
        let freed = if self.pinned_host {
            // SAFETY: the caller guarantees the chunk came from malloc_host here.
            unsafe { result::free_host(chunk.addr as *mut std::ffi::c_void) }
        } else {
            // SAFETY: the caller guarantees the chunk came from malloc_sync here.
            unsafe { result::free_sync(chunk.addr as sys::CUdeviceptr) }
        };
        if let Err(e) = freed {
            tracing::error!(device = self.device, error = ?e, "freeing a CUDA chunk");
        }
    }

    fn granule(&self) -> usize {
        super::gpu_granule(self.pinned_host)
    }

    fn host_accessible(&self) -> bool {
        self.pinned_host
    }

    fn gpu(&self) -> Option<Arc<GpuDevice>> {
        Some(Arc::clone(&self.gpu))
    }

    /// Device memory is read and written through the device's copy
    /// stream (in the same primary context as the allocations).
    fn block_io(&self) -> Option<&dyn BlockIo> {
        (!self.pinned_host).then_some(&*self.gpu as &dyn BlockIo)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    #[test]
    fn without_a_driver_discovery_is_an_error_not_a_panic() {
        if crate::gpu::driver_present() {
            eprintln!("skipped: libcuda is present, this test covers machines without it");
            return;
        }
        assert!(matches!(cuda_devices(), Err(Error::NoGpu(_))));
        assert!(matches!(CudaProvider::new(0, false), Err(Error::NoGpu(_))));
    }

    #[test]
    fn device_memory_round_trip_on_a_real_gpu() {
        let Ok(devices) = cuda_devices() else {
            eprintln!("skipped: no CUDA GPU on this machine");
            return;
        };
        let Some(first) = devices.first() else {
            eprintln!("skipped: the CUDA driver reports no device");
            return;
        };
        assert!(first.total_memory > 0);
        assert!(!first.pci_bus_id.is_empty());
        for pinned in [false, true] {
            let p = CudaProvider::new(first.ordinal, pinned).unwrap();
            assert!(!p.context.is_retained(), "creation retains no context");
            let c = p.acquire(1 << 20).unwrap();
            assert!(p.context.is_retained(), "the first allocation does");
            assert_ne!(c.addr, 0);
            // SAFETY: the chunk came from `p` and is not used afterwards.
            unsafe { p.release(c) };
        }
    }
}
