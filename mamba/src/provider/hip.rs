//! HIP (ROCm) device memory through `libamdhip64`, loaded at run time so
//! that the crate needs no ROCm installation to build.

use super::{Chunk, Provider};
use crate::error::{Error, Result};
use libloading::Library;
use std::ffi::{c_int, c_uint, c_void};
use std::sync::OnceLock;

type HipError = c_int;

/// The few HIP runtime entry points mamba uses.
struct HipApi {
    get_device_count: unsafe extern "C" fn(*mut c_int) -> HipError,
    set_device: unsafe extern "C" fn(c_int) -> HipError,
    device_total_mem: unsafe extern "C" fn(*mut usize, c_int) -> HipError,
    malloc: unsafe extern "C" fn(*mut *mut c_void, usize) -> HipError,
    free: unsafe extern "C" fn(*mut c_void) -> HipError,
    host_malloc: unsafe extern "C" fn(*mut *mut c_void, usize, c_uint) -> HipError,
    host_free: unsafe extern "C" fn(*mut c_void) -> HipError,
    _lib: Library,
}

const LIBRARY_NAMES: [&str; 3] = ["libamdhip64.so", "libamdhip64.so.6", "libamdhip64.so.5"];

fn load() -> std::result::Result<HipApi, String> {
    let mut last = String::from("no candidate name");
    for name in LIBRARY_NAMES {
        // SAFETY: loading the HIP runtime runs its initialisers, which is
        // what using HIP means.
        match unsafe { Library::new(name) } {
            Ok(lib) => return resolve(lib).map_err(|e| format!("{name}: {e}")),
            Err(e) => last = e.to_string(),
        }
    }
    Err(format!("libamdhip64 is not installed ({last})"))
}

fn resolve(lib: Library) -> std::result::Result<HipApi, libloading::Error> {
    // SAFETY: each symbol is looked up under its HIP name and given the
    // signature the HIP runtime API documents for it.
    unsafe {
        Ok(HipApi {
            get_device_count: *lib.get(b"hipGetDeviceCount\0")?,
            set_device: *lib.get(b"hipSetDevice\0")?,
            device_total_mem: *lib.get(b"hipDeviceTotalMem\0")?,
            malloc: *lib.get(b"hipMalloc\0")?,
            free: *lib.get(b"hipFree\0")?,
            host_malloc: *lib.get(b"hipHostMalloc\0")?,
            host_free: *lib.get(b"hipHostFree\0")?,
            _lib: lib,
        })
    }
}

fn api() -> Result<&'static HipApi> {
    static API: OnceLock<std::result::Result<HipApi, String>> = OnceLock::new();
    API.get_or_init(load)
        .as_ref()
        .map_err(|e| Error::NoGpu(e.clone()))
}

/// `hipErrorOutOfMemory`.
const HIP_ERROR_OUT_OF_MEMORY: HipError = 2;

fn check(call: &'static str, code: HipError) -> Result<()> {
    match code {
        0 => Ok(()),
        HIP_ERROR_OUT_OF_MEMORY => Err(Error::Exhausted {
            call,
            reason: "hipErrorOutOfMemory".into(),
        }),
        _ => Err(Error::Gpu {
            call,
            message: format!("hipError_t {code}"),
        }),
    }
}

/// A HIP device found at discovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HipDevice {
    /// Device ordinal.
    pub ordinal: u32,
    /// Total device memory in bytes.
    pub total_memory: usize,
}

/// Lists HIP devices, or explains why there are none.
pub fn hip_devices() -> Result<Vec<HipDevice>> {
    let api = api()?;
    let mut count = 0;
    // SAFETY: writes one int.
    check("hipGetDeviceCount", unsafe {
        (api.get_device_count)(&mut count)
    })?;
    (0..count)
        .map(|ordinal| {
            let mut total = 0usize;
            // SAFETY: writes one usize for a device ordinal below the count.
            check("hipDeviceTotalMem", unsafe {
                (api.device_total_mem)(&mut total, ordinal)
            })?;
            Ok(HipDevice {
                ordinal: ordinal as u32,
                total_memory: total,
            })
        })
        .collect()
}

/// Device memory (`hipMalloc`) or pinned host memory (`hipHostMalloc`) of
/// one HIP device.
#[derive(Debug)]
pub struct HipProvider {
    device: u32,
    pinned_host: bool,
}

impl HipProvider {
    /// A provider for device `ordinal`; fails when HIP is absent.
    pub fn new(ordinal: u32, pinned_host: bool) -> Result<Self> {
        api()?;
        Ok(HipProvider {
            device: ordinal,
            pinned_host,
        })
    }
}

impl Provider for HipProvider {
    fn acquire(&self, len: usize) -> Result<Chunk> {
        let api = api()?;
        // SAFETY: selects the device for this thread.
        check("hipSetDevice", unsafe {
            (api.set_device)(self.device as c_int)
        })?;
        let mut ptr = std::ptr::null_mut();
        let code = if self.pinned_host {
            // SAFETY: writes one pointer; flags 0 = default pinned memory.
            unsafe { (api.host_malloc)(&mut ptr, len, 0) }
        } else {
            // SAFETY: writes one pointer.
            unsafe { (api.malloc)(&mut ptr, len) }
        };
        check(
            if self.pinned_host {
                "hipHostMalloc"
            } else {
                "hipMalloc"
            },
            code,
        )?;
        Ok(Chunk {
            addr: ptr as usize,
            len,
        })
    }

    unsafe fn release(&self, chunk: Chunk) {
        let Ok(api) = api() else { return };
        let ptr = chunk.addr as *mut c_void;
        // SAFETY: the caller guarantees the chunk came from this provider.
        let code = unsafe {
            if self.pinned_host {
                (api.host_free)(ptr)
            } else {
                (api.free)(ptr)
            }
        };
        if code != 0 {
            tracing::error!(device = self.device, code, "freeing a HIP chunk");
        }
    }

    fn granule(&self) -> usize {
        super::gpu_granule(self.pinned_host)
    }

    fn host_accessible(&self) -> bool {
        self.pinned_host
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_hip_discovery_is_an_error_not_a_panic() {
        match hip_devices() {
            Err(Error::NoGpu(reason)) => assert!(reason.contains("libamdhip64"), "{reason}"),
            Err(other) => panic!("unexpected error {other}"),
            Ok(devices) => eprintln!("skipped: HIP is installed ({} devices)", devices.len()),
        }
    }
}
