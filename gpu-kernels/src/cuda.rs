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

/// What NVRTC compiles: a CUDA C source, its program name and options.
#[derive(Clone, Copy)]
pub(crate) struct Program<'a> {
    /// Program name, shown in the compiler's messages.
    pub(crate) name: &'a str,
    /// The CUDA C source.
    pub(crate) source: &'a str,
    /// NVRTC options besides the target architecture.
    pub(crate) options: &'a [&'a str],
}

/// The layout kernels.
const LAYOUT_KERNELS: Program<'static> = Program {
    name: "mamba_gpu_kernels.cu",
    source: SOURCE,
    options: &[],
};

/// Compiled cubins by architecture and program, shared by every device of
/// that architecture in the process.
fn cubin_for(arch: &str, program: Program<'_>) -> Result<Arc<Vec<u8>>, KernelError> {
    type Key = (String, String, String, Vec<String>);
    static CACHE: OnceLock<Mutex<HashMap<Key, Arc<Vec<u8>>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let key: Key = (
        arch.to_owned(),
        program.name.to_owned(),
        program.source.to_owned(),
        program.options.iter().map(|o| (*o).to_owned()).collect(),
    );
    if let Some(c) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(c.clone());
    }
    let cubin = Arc::new(compile(arch, program)?);
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, cubin.clone());
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

/// Compiles `program` to a cubin for `arch` (`sm_90`).
fn compile(arch: &str, program: Program<'_>) -> Result<Vec<u8>, KernelError> {
    if !nvrtc_present() {
        return Err(KernelError::NoCompiler(missing_nvrtc()));
    }
    let nul = |what: &str| KernelError::Unsupported(format!("{what} contains a NUL byte"));
    let src = CString::new(program.source).map_err(|_| nul("kernel source"))?;
    let name = CString::new(program.name).map_err(|_| nul("program name"))?;
    let prog = nvrtc::result::create_program(&src, Some(&name)).map_err(nvrtc_err(arch))?;
    let mut options = vec![format!("--gpu-architecture={arch}")];
    options.extend(program.options.iter().map(|o| (*o).to_owned()));
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

/// A compiled program loaded on one CUDA device, with its entry points.
pub(crate) struct Module {
    device: sys::CUdevice,
    ctx: sys::CUcontext,
    module: sys::CUmodule,
    functions: HashMap<&'static str, sys::CUfunction>,
}

// SAFETY: the context, module and function handles are process-wide driver
// objects, valid on any thread once the context is pushed there (every
// call pushes it).
unsafe impl Send for Module {}
// SAFETY: as above; the handles are only read after construction.
unsafe impl Sync for Module {}

impl Module {
    /// Compiles `program` for device `ordinal` (or takes it from the
    /// cache), retains the device's primary context, loads the program
    /// into it and looks up the entry points `kernels`.
    pub(crate) fn load(
        ordinal: u32,
        program: Program<'_>,
        kernels: &[&'static str],
    ) -> Result<Self, KernelError> {
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
        let image = cubin_for(&arch, program)?;
        // SAFETY: `device` came from cuDeviceGet; released in Drop or below.
        let ctx = unsafe { result::primary_ctx::retain(device) }
            .map_err(driver_err("cuDevicePrimaryCtxRetain"))?;
        let mut backend = Module {
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
            for &name in kernels {
                let cname = CString::new(name).map_err(|_| {
                    KernelError::Unsupported(format!("kernel name {name:?} contains a NUL byte"))
                })?;
                // SAFETY: the module was loaded above and is still loaded.
                let f = unsafe { result::module::get_function(backend.module, cname) }
                    .map_err(driver_err("cuModuleGetFunction"))?;
                backend.functions.insert(name, f);
            }
        }
        tracing::debug!(ordinal, %arch, program = program.name, "CUDA module loaded");
        Ok(backend)
    }

    /// Enqueues `launch` (one of the entry points named at load) on
    /// `stream`.
    ///
    /// # Safety
    ///
    /// The parameter words must be what the kernel's single parameter
    /// struct expects, and every device address in them must stay valid
    /// for what the kernel reads and writes until `stream` has run it.
    pub(crate) unsafe fn launch(
        &self,
        launch: &Launch,
        stream: CUstream,
    ) -> Result<(), KernelError> {
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
        // before returning; the addresses inside are valid per the
        // caller's contract.
        unsafe { result::launch_kernel(f, (gx, gy, gz), (bx, by, bz), 0, stream, &mut args) }
            .map_err(driver_err("cuLaunchKernel"))
    }
}

/// The layout kernels loaded on one CUDA device.
pub(crate) struct CudaBackend {
    module: Module,
}

impl CudaBackend {
    /// Compiles (or takes from the cache) the layout kernels for device
    /// `ordinal`, retains its primary context and loads them into it.
    pub(crate) fn load(ordinal: u32) -> Result<Self, KernelError> {
        Ok(CudaBackend {
            module: Module::load(ordinal, LAYOUT_KERNELS, &KERNELS)?,
        })
    }
}

impl Backend for CudaBackend {
    fn api(&self) -> crate::Api {
        crate::Api::Cuda
    }

    fn launch(&self, launch: &Launch, stream: CUstream) -> Result<(), KernelError> {
        // SAFETY: the planner packed the parameters for this kernel, and
        // the addresses inside were checked against the caller's buffer
        // lengths.
        unsafe { self.module.launch(launch, stream) }
    }

    fn zero(&self, ptr: u64, bytes: usize, stream: CUstream) -> Result<(), KernelError> {
        let _ctx = Pushed::new(self.module.ctx)?;
        // SAFETY: the caller checked that `bytes` bytes at `ptr` belong to
        // its buffer.
        unsafe { result::memset_d8_async(ptr, 0, bytes, stream) }
            .map_err(driver_err("cuMemsetD8Async"))
    }
}

impl Drop for Module {
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
