//! HIP (ROCm) device memory and pinned host memory through `libamdhip64`,
//! loaded at run time (on first use) so that the crate needs no ROCm
//! installation to build or run.
//!
//! Every call that needs a current device selects it with `hipSetDevice`
//! and gives the calling thread its previous current device back
//! afterwards, so that mamba never changes the caller's HIP state.

use super::{Chunk, Provider};
use crate::error::{Error, Result};
use libloading::Library;
use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::sync::OnceLock;

type HipError = c_int;

/// The few HIP runtime entry points mamba uses.
struct HipApi {
    get_device_count: unsafe extern "C" fn(*mut c_int) -> HipError,
    get_device: unsafe extern "C" fn(*mut c_int) -> HipError,
    set_device: unsafe extern "C" fn(c_int) -> HipError,
    pci_bus_id: unsafe extern "C" fn(*mut c_char, c_int, c_int) -> HipError,
    error_name: unsafe extern "C" fn(HipError) -> *const c_char,
    device_total_mem: unsafe extern "C" fn(*mut usize, c_int) -> HipError,
    malloc: unsafe extern "C" fn(*mut *mut c_void, usize) -> HipError,
    free: unsafe extern "C" fn(*mut c_void) -> HipError,
    host_malloc: unsafe extern "C" fn(*mut *mut c_void, usize, c_uint) -> HipError,
    host_free: unsafe extern "C" fn(*mut c_void) -> HipError,
    _lib: Library,
}

fn load() -> std::result::Result<HipApi, String> {
    let mut last = String::from("no candidate name");
    for name in mamba_gpu_kernels::HIP_RUNTIME_NAMES {
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
            get_device: *lib.get(b"hipGetDevice\0")?,
            set_device: *lib.get(b"hipSetDevice\0")?,
            pci_bus_id: *lib.get(b"hipDeviceGetPCIBusId\0")?,
            error_name: *lib.get(b"hipGetErrorName\0")?,
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

/// `hipHostMallocPortable`: pinned memory usable by every device, as the
/// CUDA pinned tier's `CU_MEMHOSTALLOC_PORTABLE`.
const HIP_HOST_MALLOC_PORTABLE: c_uint = 0x1;

/// `hipErrorOutOfMemory`.
const HIP_ERROR_OUT_OF_MEMORY: HipError = 2;

impl HipApi {
    /// The runtime's name for an error code (`hipErrorNoDevice`).
    fn describe(&self, code: HipError) -> String {
        // SAFETY: hipGetErrorName returns a static NUL-terminated string (or
        // null) for any code.
        let name = unsafe { (self.error_name)(code) };
        if name.is_null() {
            return format!("hipError_t {code}");
        }
        // SAFETY: non-null, static and NUL-terminated as documented.
        let name = unsafe { CStr::from_ptr(name) };
        format!("{} ({code})", name.to_string_lossy())
    }

    fn check(&self, call: &'static str, code: HipError) -> Result<()> {
        match code {
            0 => Ok(()),
            HIP_ERROR_OUT_OF_MEMORY => Err(Error::Exhausted {
                call,
                reason: self.describe(code),
            }),
            _ => Err(Error::Gpu {
                call,
                message: self.describe(code),
            }),
        }
    }

    /// The PCI bus id of a device (`"0000:c1:00.0"`), when the runtime
    /// tells.
    fn pci_bus_id(&self, ordinal: c_int) -> Option<String> {
        let mut text: [c_char; 64] = [0; 64];
        // SAFETY: writes at most `len` bytes, NUL-terminated, into `text`.
        let code = unsafe { (self.pci_bus_id)(text.as_mut_ptr(), text.len() as c_int, ordinal) };
        if code != 0 {
            tracing::debug!(ordinal, error = %self.describe(code), "no PCI bus id");
            return None;
        }
        text[text.len() - 1] = 0;
        // SAFETY: `text` is NUL-terminated (forced above).
        let id = unsafe { CStr::from_ptr(text.as_ptr()) };
        Some(id.to_string_lossy().into_owned())
    }
}

/// Makes a device current for the calling thread and gives the thread its
/// previous current device back when dropped.
struct CurrentDevice<'a> {
    api: &'a HipApi,
    previous: c_int,
}

impl<'a> CurrentDevice<'a> {
    fn select(api: &'a HipApi, device: u32) -> Result<Self> {
        let mut previous = 0;
        // SAFETY: writes one int.
        api.check("hipGetDevice", unsafe { (api.get_device)(&mut previous) })?;
        // SAFETY: selects a device for this thread only.
        api.check("hipSetDevice", unsafe { (api.set_device)(device as c_int) })?;
        Ok(CurrentDevice { api, previous })
    }
}

impl Drop for CurrentDevice<'_> {
    fn drop(&mut self) {
        // SAFETY: gives the thread back the device it had before `select`.
        let code = unsafe { (self.api.set_device)(self.previous) };
        if code != 0 {
            tracing::error!(error = %self.api.describe(code), "restoring the current HIP device");
        }
    }
}

/// A HIP device found at discovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HipDevice {
    /// Device ordinal.
    pub ordinal: u32,
    /// Total device memory in bytes.
    pub total_memory: usize,
    /// PCI bus id (`"0000:c1:00.0"`), when the runtime reports it.
    pub pci_bus_id: Option<String>,
}

/// Lists HIP devices, or explains why there are none: a runtime that is
/// absent, or that loads but cannot count devices (no AMD GPU or driver),
/// is [`Error::NoGpu`] with the reason; a device whose memory cannot be
/// queried is left out (and logged). Only device queries: no context is
/// created.
pub fn hip_devices() -> Result<Vec<HipDevice>> {
    let api = api()?;
    let mut count = 0;
    // SAFETY: writes one int.
    let code = unsafe { (api.get_device_count)(&mut count) };
    if code != 0 {
        return Err(Error::NoGpu(format!(
            "libamdhip64 is installed but hipGetDeviceCount failed: {}",
            api.describe(code)
        )));
    }
    Ok((0..count.max(0))
        .filter_map(|ordinal| {
            let mut total = 0usize;
            // SAFETY: writes one usize for a device ordinal below the count.
            let code = unsafe { (api.device_total_mem)(&mut total, ordinal) };
            if code != 0 {
                tracing::warn!(ordinal, error = %api.describe(code), "HIP device left out");
                return None;
            }
            Some(HipDevice {
                ordinal: ordinal as u32,
                total_memory: total,
                pci_bus_id: api.pci_bus_id(ordinal),
            })
        })
        .collect())
}

/// Device memory (`hipMalloc`) or pinned host memory (`hipHostMalloc`) of
/// one HIP device.
#[derive(Debug)]
pub struct HipProvider {
    device: u32,
    pinned_host: bool,
}

impl HipProvider {
    /// A provider for device `ordinal`; `pinned_host` selects pinned host
    /// memory (`hipHostMalloc`) instead of device memory. Fails when HIP is
    /// absent; touches no device until the first allocation.
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
        let _current = CurrentDevice::select(api, self.device)?;
        let mut ptr = std::ptr::null_mut();
        let code = if self.pinned_host {
            // SAFETY: writes one pointer.
            unsafe { (api.host_malloc)(&mut ptr, len, HIP_HOST_MALLOC_PORTABLE) }
        } else {
            // SAFETY: writes one pointer.
            unsafe { (api.malloc)(&mut ptr, len) }
        };
        api.check(
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
        let current = match CurrentDevice::select(api, self.device) {
            Ok(current) => current,
            Err(e) => {
                tracing::error!(device = self.device, error = %e, "freeing a HIP chunk");
                return;
            }
        };
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
            tracing::error!(device = self.device, error = %api.describe(code), "freeing a HIP chunk");
        }
        drop(current);
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
        let found = hip_devices();
        eprintln!("hip_devices() gave {found:?}");
        match found {
            Err(Error::NoGpu(reason)) => assert!(reason.contains("libamdhip64"), "{reason}"),
            Err(other) => panic!("discovery must report NoGpu, not {other:?}"),
            Ok(devices) => {
                for d in &devices {
                    assert!(d.total_memory > 0, "{d:?}");
                }
                eprintln!("skipped: HIP is installed ({} devices)", devices.len());
            }
        }
    }

    #[test]
    fn allocations_leave_the_callers_current_device_as_it_was() {
        let devices = match hip_devices() {
            Ok(d) if !d.is_empty() => d,
            other => {
                eprintln!("skipped: no HIP device ({other:?})");
                return;
            }
        };
        let api = api().unwrap();
        let last = devices.last().unwrap().ordinal;
        for pinned in [false, true] {
            let mut before = -1;
            // SAFETY: writes one int.
            api.check("hipGetDevice", unsafe { (api.get_device)(&mut before) })
                .unwrap();
            let p = HipProvider::new(last, pinned).unwrap();
            let c = p.acquire(1 << 20).unwrap();
            assert_ne!(c.addr, 0);
            // SAFETY: the chunk came from `p` and is not used afterwards.
            unsafe { p.release(c) };
            let mut after = -1;
            // SAFETY: writes one int.
            api.check("hipGetDevice", unsafe { (api.get_device)(&mut after) })
                .unwrap();
            assert_eq!(before, after, "pinned: {pinned}");
        }
    }
}
