//! The CUDA backend: NVRTC compiles the kernel source to a cubin for the
//! device's compute capability (once per architecture and process), the
//! driver loads it into the device's primary context, and every call
//! pushes that context and pops it again, leaving the caller's current
//! context alone.

use std::collections::HashMap;
use std::ffi::{c_void, CStr, CString};
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::driver::sys::{self, CUstream};
use cudarc::driver::{result, DriverError};
use cudarc::nvrtc;

use crate::backend::Backend;
use crate::error::KernelError;
use crate::plan::{Launch, KERNELS};
use crate::SOURCE;

fn driver_err(call: &'static str) -> impl Fn(DriverError) -> KernelError {
    move |e| KernelError::Driver {
        call,
        message: format!("{e:?}"),
    }
}

/// Whether libcuda can be loaded (cudarc panics on first use otherwise).
pub(crate) fn driver_present() -> bool {
    // SAFETY: only tries to dlopen the library under its usual names.
    unsafe { sys::is_culib_present() }
}

fn nvrtc_present() -> bool {
    // SAFETY: only tries to dlopen the library under its usual names.
    unsafe { nvrtc::sys::is_culib_present() }
}

/// The device's primary context made current for the guard's lifetime.
struct Pushed;

impl Pushed {
    fn new(ctx: sys::CUcontext) -> Result<Self, KernelError> {
        // SAFETY: `ctx` is a primary context retained by the caller.
        unsafe { sys::cuCtxPushCurrent_v2(ctx) }
            .result()
            .map_err(driver_err("cuCtxPushCurrent"))?;
        Ok(Pushed)
    }
}

impl Drop for Pushed {
    fn drop(&mut self) {
        let mut popped = std::ptr::null_mut();
        // SAFETY: pops the context this guard pushed on this thread.
        if let Err(e) = unsafe { sys::cuCtxPopCurrent_v2(&mut popped) }.result() {
            tracing::warn!("cuCtxPopCurrent failed: {e:?}");
        }
    }
}

/// Compiled cubins by architecture, shared by every device of that
/// architecture in the process.
fn cubin_for(arch: &str) -> Result<Arc<Vec<u8>>, KernelError> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<Vec<u8>>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(c) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(arch) {
        return Ok(c.clone());
    }
    let cubin = Arc::new(compile(arch)?);
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(arch.to_owned(), cubin.clone());
    Ok(cubin)
}

fn nvrtc_err(arch: &str) -> impl Fn(nvrtc::result::NvrtcError) -> KernelError + '_ {
    move |e| KernelError::Compile {
        arch: arch.to_owned(),
        status: format!("{e:?}"),
        log: String::new(),
    }
}

/// Why NVRTC cannot be used. cudarc looks for the library under names
/// derived from the CUDA version it was built for (`libnvrtc.so`,
/// `libnvrtc.so.12` with the workspace's `cuda-12080`), so a CUDA 13
/// installation that only has `libnvrtc.so.13` is named in the message.
fn missing_nvrtc() -> String {
    let searched = cudarc::get_lib_name_candidates("nvrtc");
    let loadable = |name: &str| {
        // SAFETY: only tries to dlopen the library; its initialisers are
        // those of the compiler the caller wants to use.
        unsafe { libloading::Library::new(name) }.is_ok()
    };
    let newer = ["libnvrtc.so.13", "libnvrtc.so.14"]
        .into_iter()
        .find(|name| !searched.iter().any(|s| s == name) && loadable(name));
    match newer {
        Some(name) => format!(
            "{name} is installed but this build looks for {searched:?}: add a libnvrtc.so \
             link to it in the library path, or build cudarc with the feature of that CUDA version"
        ),
        None => format!("libnvrtc cannot be loaded (searched {searched:?})"),
    }
}

/// Compiles the kernel source to a cubin for `arch` (`sm_90`).
fn compile(arch: &str) -> Result<Vec<u8>, KernelError> {
    if !nvrtc_present() {
        return Err(KernelError::NoCompiler(missing_nvrtc()));
    }
    let src = CString::new(SOURCE)
        .map_err(|_| KernelError::Unsupported("kernel source contains a NUL byte".into()))?;
    let prog = nvrtc::result::create_program(&src, Some(c"mamba_gpu_kernels.cu"))
        .map_err(nvrtc_err(arch))?;
    let options = [format!("--gpu-architecture={arch}")];
    // SAFETY: `prog` was created above and is destroyed only below.
    let compiled = unsafe { nvrtc::result::compile_program(prog, &options) };
    let out = match compiled {
        Err(e) => {
            // SAFETY: as above.
            let log = unsafe { nvrtc::result::get_program_log(prog) }
                .map(|l| c_text(&l))
                .unwrap_or_default();
            Err(KernelError::Compile {
                arch: arch.to_owned(),
                status: format!("{e:?}"),
                log,
            })
        }
        // SAFETY: as above; the program compiled.
        Ok(()) => unsafe { cubin(prog) }.map_err(nvrtc_err(arch)),
    };
    // SAFETY: `prog` is not used after this.
    if let Err(e) = unsafe { nvrtc::result::destroy_program(prog) } {
        tracing::warn!("nvrtcDestroyProgram failed: {e:?}");
    }
    out
}

/// The cubin of a compiled program.
///
/// # Safety
///
/// `prog` must be a live, successfully compiled program.
unsafe fn cubin(prog: nvrtc::sys::nvrtcProgram) -> Result<Vec<u8>, nvrtc::result::NvrtcError> {
    let mut size = 0usize;
    // SAFETY: writes one usize; `prog` is live per the contract.
    unsafe { nvrtc::sys::nvrtcGetCUBINSize(prog, &mut size) }.result()?;
    let mut image = vec![0u8; size];
    // SAFETY: `image` has the size NVRTC reported.
    unsafe { nvrtc::sys::nvrtcGetCUBIN(prog, image.as_mut_ptr().cast()) }.result()?;
    Ok(image)
}

/// Text of a NUL-terminated C character buffer.
fn c_text(buf: &[std::ffi::c_char]) -> String {
    let bytes: Vec<u8> = buf.iter().map(|&c| c as u8).collect();
    CStr::from_bytes_until_nul(&bytes)
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned())
}

/// The kernels loaded on one CUDA device.
pub(crate) struct CudaBackend {
    device: sys::CUdevice,
    ctx: sys::CUcontext,
    module: sys::CUmodule,
    functions: HashMap<&'static str, sys::CUfunction>,
}

// SAFETY: the context, module and function handles are process-wide driver
// objects, valid on any thread once the context is pushed there (every
// call pushes it).
unsafe impl Send for CudaBackend {}
// SAFETY: as above; the handles are only read after construction.
unsafe impl Sync for CudaBackend {}

impl CudaBackend {
    /// Compiles (or takes from the cache) the kernels for device
    /// `ordinal`, retains its primary context and loads them into it.
    pub(crate) fn load(ordinal: u32) -> Result<Self, KernelError> {
        if !driver_present() {
            return Err(KernelError::NoDriver(
                "the CUDA driver library (libcuda) cannot be loaded".into(),
            ));
        }
        result::init().map_err(driver_err("cuInit"))?;
        let count = result::device::get_count().map_err(driver_err("cuDeviceGetCount"))?;
        if i64::from(ordinal) >= i64::from(count) {
            return Err(KernelError::NoDevice {
                ordinal,
                count: count.max(0) as u32,
            });
        }
        let device = result::device::get(ordinal as i32).map_err(driver_err("cuDeviceGet"))?;
        let attr = |a| {
            // SAFETY: `device` came from cuDeviceGet.
            unsafe { result::device::get_attribute(device, a) }
                .map_err(driver_err("cuDeviceGetAttribute"))
        };
        let major = attr(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?;
        let minor = attr(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?;
        let arch = format!("sm_{major}{minor}");
        let image = cubin_for(&arch)?;
        // SAFETY: `device` came from cuDeviceGet; released in Drop or below.
        let ctx = unsafe { result::primary_ctx::retain(device) }
            .map_err(driver_err("cuDevicePrimaryCtxRetain"))?;
        let mut backend = CudaBackend {
            device,
            ctx,
            module: std::ptr::null_mut(),
            functions: HashMap::new(),
        };
        {
            let _ctx = Pushed::new(ctx)?;
            // SAFETY: `image` is a complete cubin kept alive across the call.
            backend.module = unsafe { result::module::load_data(image.as_ptr().cast()) }
                .map_err(driver_err("cuModuleLoadData"))?;
            for name in KERNELS {
                let cname = CString::new(name).map_err(|_| {
                    KernelError::Unsupported(format!("kernel name {name:?} contains a NUL byte"))
                })?;
                // SAFETY: the module was loaded above and is still loaded.
                let f = unsafe { result::module::get_function(backend.module, cname) }
                    .map_err(driver_err("cuModuleGetFunction"))?;
                backend.functions.insert(name, f);
            }
        }
        tracing::debug!(ordinal, %arch, "CUDA layout kernels loaded");
        Ok(backend)
    }
}

impl Backend for CudaBackend {
    fn api(&self) -> crate::Api {
        crate::Api::Cuda
    }

    fn launch(&self, launch: &Launch, stream: CUstream) -> Result<(), KernelError> {
        let f = *self.functions.get(launch.kernel).ok_or_else(|| {
            KernelError::Unsupported(format!("no kernel named {}", launch.kernel))
        })?;
        let _ctx = Pushed::new(self.ctx)?;
        let mut words = launch.params.clone();
        let mut args = [words.as_mut_ptr().cast::<c_void>()];
        let [gx, gy, gz] = launch.grid;
        let [bx, by, bz] = launch.block;
        // SAFETY: `f` belongs to the loaded module; its single parameter is
        // a struct of `words.len()` 64-bit words, which the driver copies
        // before returning; the addresses inside were checked against the
        // caller's buffer lengths.
        unsafe { result::launch_kernel(f, (gx, gy, gz), (bx, by, bz), 0, stream, &mut args) }
            .map_err(driver_err("cuLaunchKernel"))
    }

    fn zero(&self, ptr: u64, bytes: usize, stream: CUstream) -> Result<(), KernelError> {
        let _ctx = Pushed::new(self.ctx)?;
        // SAFETY: the caller checked that `bytes` bytes at `ptr` belong to
        // its buffer.
        unsafe { result::memset_d8_async(ptr, 0, bytes, stream) }
            .map_err(driver_err("cuMemsetD8Async"))
    }
}

impl Drop for CudaBackend {
    fn drop(&mut self) {
        if !self.module.is_null() {
            match Pushed::new(self.ctx) {
                Ok(_ctx) => {
                    // SAFETY: the module is loaded and no longer used.
                    if let Err(e) = unsafe { result::module::unload(self.module) } {
                        tracing::warn!("cuModuleUnload failed: {e:?}");
                    }
                }
                Err(e) => tracing::warn!("module not unloaded: {e}"),
            }
        }
        // SAFETY: balances the retain in `load`.
        if let Err(e) = unsafe { result::primary_ctx::release(self.device) } {
            tracing::warn!("cuDevicePrimaryCtxRelease failed: {e:?}");
        }
    }
}
