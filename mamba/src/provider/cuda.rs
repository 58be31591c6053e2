//! CUDA device memory and page-locked host memory through the driver API
//! (cudarc, loaded at run time: the crate builds and runs without CUDA).

use super::{Chunk, Provider};
use crate::error::{Error, Result};
use cudarc::driver::{result, sys};

/// A CUDA device found at discovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CudaDevice {
    /// Device ordinal.
    pub ordinal: u32,
    /// Marketing name.
    pub name: String,
    /// Total device memory in bytes.
    pub total_memory: usize,
}

/// Whether libcuda can be loaded. cudarc panics on first use when it
/// cannot, so every entry point checks this first.
fn driver_present() -> bool {
    // SAFETY: only tries to dlopen the library by its usual names.
    unsafe { sys::is_culib_present() }
}

fn gpu_err(call: &'static str) -> impl Fn(result::DriverError) -> Error {
    move |e| match e.0 {
        sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY => Error::Exhausted {
            call,
            reason: format!("{e:?}"),
        },
        _ => Error::Gpu {
            call,
            message: format!("{e:?}"),
        },
    }
}

/// Lists CUDA devices, or explains why there are none.
pub fn cuda_devices() -> Result<Vec<CudaDevice>> {
    if !driver_present() {
        return Err(Error::NoGpu(
            "the CUDA driver library (libcuda) is not installed".into(),
        ));
    }
    result::init().map_err(gpu_err("cuInit"))?;
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
            })
        })
        .collect()
}

/// Device memory (`cuMemAlloc`) or page-locked host memory
/// (`cuMemHostAlloc`) of one device, allocated in its primary context.
#[derive(Debug)]
pub struct CudaProvider {
    device: u32,
    pinned_host: bool,
    context: usize,
}

impl CudaProvider {
    /// A provider for device `ordinal`; `pinned_host` selects page-locked
    /// host memory instead of device memory.
    pub fn new(ordinal: u32, pinned_host: bool) -> Result<Self> {
        if !driver_present() {
            return Err(Error::NoGpu(
                "the CUDA driver library (libcuda) is not installed".into(),
            ));
        }
        result::init().map_err(gpu_err("cuInit"))?;
        let dev = result::device::get(ordinal as i32).map_err(gpu_err("cuDeviceGet"))?;
        // SAFETY: `dev` is a valid device; the primary context is released in
        // Drop.
        let ctx = unsafe { result::primary_ctx::retain(dev) }
            .map_err(gpu_err("cuDevicePrimaryCtxRetain"))?;
        Ok(CudaProvider {
            device: ordinal,
            pinned_host,
            context: ctx as usize,
        })
    }

    fn make_current(&self) -> Result<()> {
        // SAFETY: the context was retained in `new` and lives until Drop.
        unsafe { result::ctx::set_current(self.context as sys::CUcontext) }
            .map_err(gpu_err("cuCtxSetCurrent"))
    }
}

impl Provider for CudaProvider {
    fn acquire(&self, len: usize) -> Result<Chunk> {
        self.make_current()?;
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
        if self.make_current().is_err() {
            return;
        }
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
}

impl Drop for CudaProvider {
    fn drop(&mut self) {
        if let Ok(dev) = result::device::get(self.device as i32) {
            // SAFETY: balances the retain in `new`.
            let _ = unsafe { result::primary_ctx::release(dev) };
        }
    }
}

// SAFETY: a CUDA context handle may be used from any thread once made
// current there, which every call does first.
unsafe impl Send for CudaProvider {}
// SAFETY: as above; the provider holds no thread-affine state.
unsafe impl Sync for CudaProvider {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_driver_discovery_is_an_error_not_a_panic() {
        if driver_present() {
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
        for pinned in [false, true] {
            let p = CudaProvider::new(first.ordinal, pinned).unwrap();
            let c = p.acquire(1 << 20).unwrap();
            assert_ne!(c.addr, 0);
            // SAFETY: the chunk came from `p` and is not used afterwards.
            unsafe { p.release(c) };
        }
    }
}
