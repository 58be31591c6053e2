//! The HIP backend: hiprtc compiles the same kernel source for the current
//! device's architecture, the HIP module API loads and launches it. Both
//! libraries are loaded at run time, so nothing of ROCm is needed to build.
//! Every call makes the backend's device current and restores the
//! caller's device afterwards.
//!
//! Streams are passed as `CUstream` values holding a `hipStream_t` (both
//! are opaque pointers; null is the default stream).

use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};

use cudarc::driver::sys::CUstream;
use libloading::Library;

use crate::backend::Backend;
use crate::error::KernelError;
use crate::plan::{Launch, KERNELS};
use crate::SOURCE;

type HipError = c_int;
type HipModule = *mut c_void;
type HipFunction = *mut c_void;
type HiprtcProgram = *mut c_void;

/// The names the HIP runtime library is loaded by, in order; mamba's HIP
/// provider loads it by the same ones.
pub const HIP_RUNTIME_NAMES: [&str; 3] = ["libamdhip64.so", "libamdhip64.so.6", "libamdhip64.so.5"];
const HIPRTC_NAMES: [&str; 3] = ["libhiprtc.so", "libhiprtc.so.6", "libhiprtc.so.5"];

/// The HIP runtime entry points the backend uses.
struct HipApi {
    get_device_count: unsafe extern "C" fn(*mut c_int) -> HipError,
    get_device: unsafe extern "C" fn(*mut c_int) -> HipError,
    set_device: unsafe extern "C" fn(c_int) -> HipError,
    module_load_data: unsafe extern "C" fn(*mut HipModule, *const c_void) -> HipError,
    module_unload: unsafe extern "C" fn(HipModule) -> HipError,
    module_get_function:
        unsafe extern "C" fn(*mut HipFunction, HipModule, *const c_char) -> HipError,
    #[allow(clippy::type_complexity)]
    module_launch_kernel: unsafe extern "C" fn(
        HipFunction,
        c_uint,
        c_uint,
        c_uint,
        c_uint,
        c_uint,
        c_uint,
        c_uint,
        *mut c_void,
        *mut *mut c_void,
        *mut *mut c_void,
    ) -> HipError,
    memset_d8_async: unsafe extern "C" fn(*mut c_void, u8, usize, *mut c_void) -> HipError,
    _lib: Library,
}

/// The hiprtc entry points the backend uses.
struct HiprtcApi {
    create_program: unsafe extern "C" fn(
        *mut HiprtcProgram,
        *const c_char,
        *const c_char,
        c_int,
        *const *const c_char,
        *const *const c_char,
    ) -> c_int,
    compile_program: unsafe extern "C" fn(HiprtcProgram, c_int, *const *const c_char) -> c_int,
    get_program_log_size: unsafe extern "C" fn(HiprtcProgram, *mut usize) -> c_int,
    get_program_log: unsafe extern "C" fn(HiprtcProgram, *mut c_char) -> c_int,
    get_code_size: unsafe extern "C" fn(HiprtcProgram, *mut usize) -> c_int,
    get_code: unsafe extern "C" fn(HiprtcProgram, *mut c_char) -> c_int,
    destroy_program: unsafe extern "C" fn(*mut HiprtcProgram) -> c_int,
    _lib: Library,
}

fn open(names: &[&str]) -> Result<Library, String> {
    let mut last = String::from("no candidate name");
    for name in names {
        // SAFETY: loading a GPU runtime library runs its initialisers,
        // which is what using it means.
        match unsafe { Library::new(name) } {
            Ok(lib) => return Ok(lib),
            Err(e) => last = e.to_string(),
        }
    }
    Err(format!("none of {names:?} can be loaded ({last})"))
}

fn load_hip() -> Result<HipApi, KernelError> {
    let lib = open(&HIP_RUNTIME_NAMES).map_err(KernelError::NoDriver)?;
    let missing = |e: libloading::Error| KernelError::NoDriver(e.to_string());
    // SAFETY: each symbol is looked up under its HIP name and given the
    // signature the HIP runtime API documents for it.
    unsafe {
        Ok(HipApi {
            get_device_count: *lib.get(b"hipGetDeviceCount\0").map_err(missing)?,
            get_device: *lib.get(b"hipGetDevice\0").map_err(missing)?,
            set_device: *lib.get(b"hipSetDevice\0").map_err(missing)?,
            module_load_data: *lib.get(b"hipModuleLoadData\0").map_err(missing)?,
            module_unload: *lib.get(b"hipModuleUnload\0").map_err(missing)?,
            module_get_function: *lib.get(b"hipModuleGetFunction\0").map_err(missing)?,
            module_launch_kernel: *lib.get(b"hipModuleLaunchKernel\0").map_err(missing)?,
            memset_d8_async: *lib.get(b"hipMemsetD8Async\0").map_err(missing)?,
            _lib: lib,
        })
    }
}

fn load_hiprtc() -> Result<HiprtcApi, KernelError> {
    let lib = open(&HIPRTC_NAMES).map_err(KernelError::NoCompiler)?;
    let missing = |e: libloading::Error| KernelError::NoCompiler(e.to_string());
    // SAFETY: each symbol is looked up under its hiprtc name and given the
    // signature the hiprtc API documents for it.
    unsafe {
        Ok(HiprtcApi {
            create_program: *lib.get(b"hiprtcCreateProgram\0").map_err(missing)?,
            compile_program: *lib.get(b"hiprtcCompileProgram\0").map_err(missing)?,
            get_program_log_size: *lib.get(b"hiprtcGetProgramLogSize\0").map_err(missing)?,
            get_program_log: *lib.get(b"hiprtcGetProgramLog\0").map_err(missing)?,
            get_code_size: *lib.get(b"hiprtcGetCodeSize\0").map_err(missing)?,
            get_code: *lib.get(b"hiprtcGetCode\0").map_err(missing)?,
            destroy_program: *lib.get(b"hiprtcDestroyProgram\0").map_err(missing)?,
            _lib: lib,
        })
    }
}

fn check(call: &'static str, code: c_int) -> Result<(), KernelError> {
    if code == 0 {
        return Ok(());
    }
    Err(KernelError::Driver {
        call,
        message: format!("error code {code}"),
    })
}

/// Whether the HIP runtime library can be loaded.
pub(crate) fn runtime_present() -> bool {
    open(&HIP_RUNTIME_NAMES).is_ok()
}

/// Makes a device current and restores the previous one on drop.
struct OnDevice<'a> {
    api: &'a HipApi,
    previous: c_int,
}

impl<'a> OnDevice<'a> {
    fn new(api: &'a HipApi, device: c_int) -> Result<Self, KernelError> {
        let mut previous = 0;
        // SAFETY: writes one int.
        check("hipGetDevice", unsafe { (api.get_device)(&mut previous) })?;
        // SAFETY: `device` is below the device count (checked at load).
        check("hipSetDevice", unsafe { (api.set_device)(device) })?;
        Ok(OnDevice { api, previous })
    }
}

impl Drop for OnDevice<'_> {
    fn drop(&mut self) {
        // SAFETY: restores a device ordinal HIP itself reported.
        let code = unsafe { (self.api.set_device)(self.previous) };
        if code != 0 {
            tracing::warn!("hipSetDevice({}) failed: error code {code}", self.previous);
        }
    }
}

/// Compiles the kernel source with hiprtc for the current device.
fn compile(rtc: &HiprtcApi) -> Result<Vec<u8>, KernelError> {
    let src = CString::new(SOURCE)
        .map_err(|_| KernelError::Unsupported("kernel source contains a NUL byte".into()))?;
    let mut prog: HiprtcProgram = std::ptr::null_mut();
    // SAFETY: `src` and the name are NUL-terminated and outlive the program;
    // no headers are passed.
    let code = unsafe {
        (rtc.create_program)(
            &mut prog,
            src.as_ptr(),
            c"mamba_gpu_kernels.hip".as_ptr(),
            0,
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    if code != 0 {
        return Err(KernelError::Compile {
            arch: "current HIP device".into(),
            status: format!("hiprtcCreateProgram error {code}"),
            log: String::new(),
        });
    }
    // SAFETY: `prog` was created above and is destroyed only below.
    let out = unsafe { compile_created(rtc, prog) };
    // SAFETY: `prog` is not used after this.
    let code = unsafe { (rtc.destroy_program)(&mut prog) };
    if code != 0 {
        tracing::warn!("hiprtcDestroyProgram failed: error code {code}");
    }
    out
}

/// Compiles a created program and returns its code object.
///
/// # Safety
///
/// `prog` must be a live program created by `rtc`.
unsafe fn compile_created(rtc: &HiprtcApi, prog: HiprtcProgram) -> Result<Vec<u8>, KernelError> {
    // SAFETY: no options; `prog` is live per the contract.
    let code = unsafe { (rtc.compile_program)(prog, 0, std::ptr::null()) };
    if code != 0 {
        let mut size = 0usize;
        let mut log = Vec::new();
        // SAFETY: writes one usize, then at most `size` bytes into `log`.
        if unsafe { (rtc.get_program_log_size)(prog, &mut size) } == 0 && size > 0 {
            log = vec![0u8; size];
            // SAFETY: `log` has the size hiprtc reported.
            if unsafe { (rtc.get_program_log)(prog, log.as_mut_ptr().cast()) } != 0 {
                log.clear();
            }
        }
        let log = CStr::from_bytes_until_nul(&log)
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        return Err(KernelError::Compile {
            arch: "current HIP device".into(),
            status: format!("hiprtcCompileProgram error {code}"),
            log,
        });
    }
    let mut size = 0usize;
    // SAFETY: writes one usize.
    check("hiprtcGetCodeSize", unsafe {
        (rtc.get_code_size)(prog, &mut size)
    })?;
    let mut image = vec![0u8; size];
    // SAFETY: `image` has the size hiprtc reported.
    check("hiprtcGetCode", unsafe {
        (rtc.get_code)(prog, image.as_mut_ptr().cast())
    })?;
    Ok(image)
}

/// The kernels loaded on one HIP device. Untested on hardware.
pub(crate) struct HipBackend {
    api: HipApi,
    device: c_int,
    module: HipModule,
    functions: HashMap<&'static str, HipFunction>,
}

// SAFETY: module and function handles are process-wide runtime objects,
// usable from any thread with the device made current (every call does).
unsafe impl Send for HipBackend {}
// SAFETY: as above; the handles are only read after construction.
unsafe impl Sync for HipBackend {}

impl HipBackend {
    /// Compiles the kernels for HIP device `ordinal` and loads them.
    pub(crate) fn load(ordinal: u32) -> Result<Self, KernelError> {
        let api = load_hip()?;
        let mut count = 0;
        // SAFETY: writes one int.
        check("hipGetDeviceCount", unsafe {
            (api.get_device_count)(&mut count)
        })?;
        if i64::from(ordinal) >= i64::from(count) {
            return Err(KernelError::NoDevice {
                ordinal,
                count: count.max(0) as u32,
            });
        }
        let device = ordinal as c_int;
        let rtc = load_hiprtc()?;
        let mut functions = HashMap::new();
        let module = {
            let _on = OnDevice::new(&api, device)?;
            let image = compile(&rtc)?;
            let mut module: HipModule = std::ptr::null_mut();
            // SAFETY: `image` is a complete code object kept alive across
            // the call.
            check("hipModuleLoadData", unsafe {
                (api.module_load_data)(&mut module, image.as_ptr().cast())
            })?;
            for name in KERNELS {
                let cname = CString::new(name).map_err(|_| {
                    KernelError::Unsupported(format!("kernel name {name:?} contains a NUL byte"))
                })?;
                let mut f: HipFunction = std::ptr::null_mut();
                // SAFETY: the module was loaded above; writes one handle.
                let code = unsafe { (api.module_get_function)(&mut f, module, cname.as_ptr()) };
                if code != 0 {
                    // SAFETY: the module is loaded and not used after this.
                    unsafe { (api.module_unload)(module) };
                    return Err(KernelError::Driver {
                        call: "hipModuleGetFunction",
                        message: format!("error code {code}"),
                    });
                }
                functions.insert(name, f);
            }
            module
        };
        tracing::debug!(ordinal, "HIP layout kernels loaded (untested backend)");
        Ok(HipBackend {
            api,
            device,
            module,
            functions,
        })
    }
}

impl Backend for HipBackend {
    fn api(&self) -> crate::Api {
        crate::Api::Hip
    }

    fn launch(&self, launch: &Launch, stream: CUstream) -> Result<(), KernelError> {
        let f = *self.functions.get(launch.kernel).ok_or_else(|| {
            KernelError::Unsupported(format!("no kernel named {}", launch.kernel))
        })?;
        let _on = OnDevice::new(&self.api, self.device)?;
        let mut words = launch.params.clone();
        let mut args = [words.as_mut_ptr().cast::<c_void>()];
        let [gx, gy, gz] = launch.grid;
        let [bx, by, bz] = launch.block;
        // SAFETY: `f` belongs to the loaded module; its single parameter is
        // a struct of `words.len()` 64-bit words, copied at launch; the
        // addresses inside were checked against the caller's buffers.
        check("hipModuleLaunchKernel", unsafe {
            (self.api.module_launch_kernel)(
                f,
                gx,
                gy,
                gz,
                bx,
                by,
                bz,
                0,
                stream.cast(),
                args.as_mut_ptr(),
                std::ptr::null_mut(),
            )
        })
    }

    fn zero(&self, ptr: u64, bytes: usize, stream: CUstream) -> Result<(), KernelError> {
        let _on = OnDevice::new(&self.api, self.device)?;
        // SAFETY: the caller checked that `bytes` bytes at `ptr` belong to
        // its buffer.
        check("hipMemsetD8Async", unsafe {
            (self.api.memset_d8_async)(ptr as *mut c_void, 0, bytes, stream.cast())
        })
    }
}

impl Drop for HipBackend {
    fn drop(&mut self) {
        match OnDevice::new(&self.api, self.device) {
            Ok(_on) => {
                // SAFETY: the module is loaded and no longer used.
                let code = unsafe { (self.api.module_unload)(self.module) };
                if code != 0 {
                    tracing::warn!("hipModuleUnload failed: error code {code}");
                }
            }
            Err(e) => tracing::warn!("HIP module not unloaded: {e}"),
        }
    }
}
